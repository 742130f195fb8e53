-- name: claim_idempotency_key
SELECT ledger_claim_key($1, $2, $3, $4, $5)

-- name: fetch_idempotency_key
SELECT request_hash, resource_type, resource_id, status_code, response, facts::text AS facts FROM idempotency_keys
WHERE tenant_id = $1 AND key = $2

-- name: store_idempotent_responses
-- Several first answers in one statement (and one commit): $1..$4 are parallel arrays, one element per key.
-- The ANY conditions repeat the join's on the primary key's own columns, so that whatever the join order, the table
-- is reached by its keys: a generic plan cached while the table was small reached it by row-level security's
-- tenant_id alone and filtered every key of the tenant (~20 ms a statement after a minute of postings).
UPDATE idempotency_keys k SET status_code = r.status_code, response = r.response
FROM unnest($1::text[], $2::text[], $3::smallint[], $4::bytea[]) AS r(tenant_id, key, status_code, response)
WHERE k.tenant_id = r.tenant_id AND k.key = r.key AND k.response IS NULL
  AND k.tenant_id = ANY($1::text[]) AND k.key = ANY($2::text[])

-- name: fence_tenant
SELECT ledger_fence($1)
