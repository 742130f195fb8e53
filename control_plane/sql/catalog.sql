-- name: insert_cell
INSERT INTO cells (name, api_url, database_url, queue_url) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO NOTHING
RETURNING name, api_url, database_url, queue_url, state, created_at

-- name: update_cell_urls
UPDATE cells SET api_url = $2, database_url = $3, queue_url = $4, updated_at = now() WHERE name = $1
RETURNING name, api_url, database_url, queue_url, state, created_at

-- name: fetch_cell
SELECT c.name, c.api_url, c.database_url, c.queue_url, c.state, c.created_at,
       (SELECT count(*) FROM tenants t WHERE t.cell = c.name) AS tenants
FROM cells c WHERE c.name = $1

-- name: list_cells
SELECT c.name, c.api_url, c.database_url, c.queue_url, c.state, c.created_at,
       (SELECT count(*) FROM tenants t WHERE t.cell = c.name) AS tenants
FROM cells c ORDER BY c.name

-- name: least_loaded_cell
SELECT c.name FROM cells c LEFT JOIN tenants t ON t.cell = c.name
WHERE c.state = 'active'
GROUP BY c.name ORDER BY count(t.id), c.name LIMIT 1

-- name: lock_cell_for_placement
-- A drain's `set_cell_draining` waits for the placing transaction, then sees the tenant it placed (and moves it).
SELECT state FROM cells WHERE name = $1 FOR SHARE

-- name: insert_tenant
INSERT INTO tenants (id, name, cell, state) VALUES ($1, $2, $3, 'creating')
ON CONFLICT (id) DO NOTHING
RETURNING id, name, cell, state, epoch, rate_limit_per_s, rate_burst, created_at

-- name: finish_tenant
UPDATE tenants SET state = 'active', updated_at = now() WHERE id = $1 AND state = 'creating'
RETURNING id, name, cell, state, epoch, rate_limit_per_s, rate_burst, created_at

-- name: fetch_tenant
SELECT id, name, cell, state, epoch, rate_limit_per_s, rate_burst, created_at FROM tenants WHERE id = $1

-- name: lock_tenant
SELECT id, name, cell, state, epoch, rate_limit_per_s, rate_burst, created_at FROM tenants WHERE id = $1 FOR UPDATE

-- name: lock_tenant_for_change
-- A change of the tenant's row but its key (finishing a create, recording a move): it waits for a `tenants delete`
-- holding it (lock_tenant) and holds off one, while other rows' foreign keys still take their key-share of it.
SELECT id, name, cell, state, epoch, rate_limit_per_s, rate_burst, created_at FROM tenants WHERE id = $1
FOR NO KEY UPDATE

-- name: tenant_moves
SELECT count(*) FROM moves WHERE tenant_id = $1

-- name: delete_tenant
DELETE FROM tenants WHERE id = $1

-- name: stale_creating_tenants
-- Tenants of a cell (or the one named) still `creating` more than $3 seconds after their catalog row was written.
SELECT id, floor(extract(epoch FROM now() - created_at))::bigint AS age_s FROM tenants
WHERE cell = $1 AND ($2::text IS NULL OR id = $2) AND state = 'creating'
  AND created_at < now() - make_interval(secs => $3)
ORDER BY id

-- name: known_tenants
SELECT id FROM tenants WHERE id = ANY($1::text[])

-- name: list_tenants
SELECT id, name, cell, state, epoch, rate_limit_per_s, rate_burst, created_at FROM tenants
WHERE ($1::text IS NULL OR cell = $1) AND id > $2 ORDER BY id LIMIT $3

-- name: set_tenant_rate_limit
UPDATE tenants SET rate_limit_per_s = $2, rate_burst = $3, updated_at = now() WHERE id = $1
RETURNING id, name, cell, state, epoch, rate_limit_per_s, rate_burst, created_at

-- name: set_tenant_route
UPDATE tenants SET cell = $2, epoch = epoch + 1, updated_at = now() WHERE id = $1
RETURNING id, name, cell, state, epoch, rate_limit_per_s, rate_burst, created_at

-- name: insert_audit
INSERT INTO operator_audit (actor, action, subject, details) VALUES ($1, $2, $3, $4)

-- name: lock_audit_subject
-- Held to the end of the transaction by `insert_audit_once`: reruns racing each other queue here, and the one that
-- follows sees the entry the first committed (a statement of its own: a snapshot taken after the wait).
SELECT pg_advisory_xact_lock(hashtextextended('operator_audit:' || $1 || ':' || $2, 0))

-- name: insert_audit_once
-- The entry unless one of this action and subject holding these details is there (an action a rerun completes).
INSERT INTO operator_audit (actor, action, subject, details)
SELECT $1, $2, $3, $4::jsonb
WHERE NOT EXISTS (SELECT 1 FROM operator_audit WHERE subject = $3 AND action = $2 AND details @> $4::jsonb)
RETURNING id

-- name: list_audit
SELECT id, at, actor, action, subject, details FROM operator_audit
WHERE ($1::text IS NULL OR subject = $1) ORDER BY id DESC LIMIT $2
