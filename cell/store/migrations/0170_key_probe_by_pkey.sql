-- migrate: no transaction
-- A posting's Idempotency-Key probe (ledger_post: tenant_id = $1 AND key = $2) reached by the primary key alone.
-- 0150's idempotency_keys_tenant_seq (tenant_id, seq) matched the probe's tenant condition too, and a generic plan
-- (ledger_post's, kept per connection) made while the table was empty or not yet analyzed costs both indexes alike
-- and took that one: a walk of the tenant's every key, filtered, per posting (~0.3 ms a posting at 2,000 keys,
-- growing with the table) until the table's next analyze. The same index, partial on `seq IS NOT NULL`: a probe
-- without a seq condition cannot use it; a move's `seq > floor` implies it (control_plane/moves.py), and a key with
-- no seq (claimed before 0150) is older than any floor, never read through it. Built on a live cell
-- (cell/store/migrate.py NO_TRANSACTION): the new index built CONCURRENTLY before the old one is dropped.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idempotency_keys_claimed_seq ON idempotency_keys (tenant_id, seq)
    WHERE seq IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS idempotency_keys_tenant_seq;
