-- Lock the accounts' total-balance rows in sorted order and say how long that waited: the sync path's lock
-- wait, exported as a metric. ledger_apply's own lock of the same rows is then free (this transaction holds them).
CREATE OR REPLACE FUNCTION ledger_lock(p_accounts uuid[]) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    v_start timestamptz := clock_timestamp();
BEGIN
    PERFORM 1 FROM account_balances WHERE account_id = ANY(p_accounts) ORDER BY account_id FOR UPDATE;
    RETURN extract(epoch FROM clock_timestamp() - v_start);
END $$;
