-- name: insert_tenant
INSERT INTO tenants (id, name) VALUES ($1, $2)
ON CONFLICT (id) DO NOTHING
RETURNING id, name, state, created_at

-- name: fetch_tenant
SELECT id, name, state, created_at FROM tenants WHERE id = $1

-- name: set_tenant_state
UPDATE tenants SET state = $2 WHERE id = $1 RETURNING id, name, state, created_at

-- name: insert_api_key
INSERT INTO api_keys (id, tenant_id, secret_hash, scopes) VALUES ($1, $2, $3, $4)
RETURNING id, tenant_id, scopes, created_at, revoked_at

-- name: list_api_keys
SELECT id, tenant_id, scopes, created_at, revoked_at FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE tenant_id = $1 AND id = $2
RETURNING id, tenant_id, scopes, created_at, revoked_at

-- name: find_api_key
SELECT k.tenant_id, k.id, k.scopes, t.state, t.leaving_since IS NULL AS rememberable
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE k.secret_hash = $1 AND k.revoked_at IS NULL


-- name: delete_revoked_keys
DELETE FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NOT NULL

-- name: delete_tenant
DELETE FROM tenants WHERE id = $1

-- name: api_key_cache_ttl_table
SELECT to_regclass('api_key_cache_ttl') IS NOT NULL

-- name: record_api_key_cache_ttl
INSERT INTO api_key_cache_ttl AS r (ttl_s, recorded_at) VALUES ($1, clock_timestamp())
ON CONFLICT (one) DO UPDATE SET ttl_s = excluded.ttl_s, recorded_at = excluded.recorded_at
WHERE r.ttl_s <= excluded.ttl_s

-- name: api_key_cache_ttl
SELECT ttl_s FROM api_key_cache_ttl
