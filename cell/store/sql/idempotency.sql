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
