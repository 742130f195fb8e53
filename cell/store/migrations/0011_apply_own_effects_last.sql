-- Catch-up under lock, made exact: when a sync posting applies its accounts, every queued effect it folds in
-- takes a lock version before the posting's own effects (those this transaction wrote), whatever their
-- sequence numbers. Sequence order alone put a sync debit before credits inserted after it but committed
-- before its apply: the condition (checked on the final totals) passed while the debit's own resulting
-- balance, its lock version's, showed the overdraft it was meant to forbid. Only the fold order changes.
CREATE OR REPLACE FUNCTION ledger_apply(p_accounts uuid[], p_skip_locked boolean DEFAULT false)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_locked uuid[];
    v_applied integer;
    v_own xid := pg_current_xact_id_if_assigned()::xid;
BEGIN
    IF p_skip_locked THEN
        SELECT array_agg(account_id) INTO v_locked FROM (
            SELECT account_id FROM account_balances WHERE account_id = ANY(p_accounts)
            ORDER BY account_id FOR UPDATE SKIP LOCKED) s;
    ELSE
        SELECT array_agg(account_id) INTO v_locked FROM (
            SELECT account_id FROM account_balances WHERE account_id = ANY(p_accounts)
            ORDER BY account_id FOR UPDATE) s;
    END IF;
    IF v_locked IS NULL THEN
        RETURN 0;
    END IF;

    WITH eff AS (
        SELECT e.seq, e.account_id, e.effective_at,
               e.d_pending_debits, e.d_pending_credits, e.d_posted_debits, e.d_posted_credits,
               row_number() OVER w AS rn,
               sum(e.d_pending_debits) OVER w AS c_pending_debits,
               sum(e.d_pending_credits) OVER w AS c_pending_credits,
               sum(e.d_posted_debits) OVER w AS c_posted_debits,
               sum(e.d_posted_credits) OVER w AS c_posted_credits
        FROM balance_effects e
        WHERE e.account_id = ANY(v_locked) AND e.applied_at IS NULL
        WINDOW w AS (PARTITION BY e.account_id ORDER BY coalesce(e.xmin = v_own, false), e.seq
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    ), marked AS (
        UPDATE balance_effects be
        SET applied_at = clock_timestamp(),
            lock_version = b.lock_version + eff.rn,
            pending_debits = b.pending_debits + eff.c_pending_debits,
            pending_credits = b.pending_credits + eff.c_pending_credits,
            posted_debits = b.posted_debits + eff.c_posted_debits,
            posted_credits = b.posted_credits + eff.c_posted_credits
        FROM eff JOIN account_balances b ON b.account_id = eff.account_id
        WHERE be.seq = eff.seq
        RETURNING 1
    ), totals AS (
        SELECT account_id, count(*) AS n,
               sum(d_pending_debits) AS pd, sum(d_pending_credits) AS pc,
               sum(d_posted_debits) AS od, sum(d_posted_credits) AS oc
        FROM eff GROUP BY account_id
    ), balances AS (
        UPDATE account_balances b
        SET pending_debits = b.pending_debits + t.pd, pending_credits = b.pending_credits + t.pc,
            posted_debits = b.posted_debits + t.od, posted_credits = b.posted_credits + t.oc,
            lock_version = b.lock_version + t.n, updated_at = clock_timestamp()
        FROM totals t WHERE b.account_id = t.account_id
        RETURNING 1
    ), days AS (
        INSERT INTO effective_balance_buckets AS k
            (account_id, day, pending_debits, pending_credits, posted_debits, posted_credits)
        SELECT account_id, (effective_at AT TIME ZONE 'UTC')::date,
               sum(d_pending_debits), sum(d_pending_credits), sum(d_posted_debits), sum(d_posted_credits)
        FROM eff GROUP BY 1, 2
        ON CONFLICT (account_id, day) DO UPDATE
        SET pending_debits = k.pending_debits + excluded.pending_debits,
            pending_credits = k.pending_credits + excluded.pending_credits,
            posted_debits = k.posted_debits + excluded.posted_debits,
            posted_credits = k.posted_credits + excluded.posted_credits
        RETURNING 1
    )
    SELECT count(*) INTO v_applied FROM marked;
    RETURN v_applied;
END $$;
