-- migrate: no transaction
-- Transactions' idempotency keys still awaiting an answer that will never come: bulk resources' keys claimed before
-- 0150 (which claims them decided, cell/store/sql/bulk.sql) and postings' keys whose answer was lost before 0140 (a
-- posting's key has been written whole by ledger_post since). They sat in 0150's index of unanswered keys, meant to
-- hold a few keys per request in flight: a tenant move reads that list under the tenant's fence at every round and
-- reads its keys again inside the freeze (control_plane/moves.py OPEN), so it grew with the tenant's bulk history.
-- Marked decided (201, no answer kept: a replay renders the transaction, as before). An answer an older API stores
-- late is still kept (it writes where no response is kept yet). Built on a live cell (cell/store/migrate.py
-- NO_TRANSACTION): batches of 10,000 rows found through that index, each committed on its own.
DO $$
DECLARE
    v_rows bigint;
BEGIN
    LOOP
        UPDATE idempotency_keys SET status_code = 201
        WHERE ctid = ANY (ARRAY(SELECT ctid FROM idempotency_keys
                                WHERE status_code IS NULL AND resource_type = 'ledger_transaction' LIMIT 10000))
          AND status_code IS NULL;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        COMMIT;
        EXIT WHEN v_rows = 0;
    END LOOP;
END $$;
