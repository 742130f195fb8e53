-- name: claim_idempotency_key
SELECT ledger_claim_key($1, $2, $3, $4, $5)

-- name: fetch_idempotency_key
SELECT request_hash, resource_type, resource_id, status_code, response, facts::text AS facts FROM idempotency_keys
WHERE tenant_id = $1 AND key = $2

-- name: keep_idempotent_answer
-- The first answer of a key claimed in the same transaction.
UPDATE idempotency_keys SET status_code = $3, response = $4 WHERE tenant_id = $1 AND key = $2

-- name: fence_tenant
SELECT ledger_fence($1)

-- name: fence_tenant_exclusive
-- The fence's lock in its exclusive form (as a move's freeze takes it), waited for at most $2 (lock_timeout, this
-- transaction): the tenant's writes in flight are waited out, and those that arrive wait for this transaction's
-- commit; then the fence's checks of the tenant's state, as any write's.
SELECT ledger_fence($1)
FROM (SELECT set_config('lock_timeout', $2::text, true), pg_advisory_xact_lock(ledger_fence_key($1)) OFFSET 0) locked  -- the lock first (OFFSET 0: never flattened into the fence's call)
