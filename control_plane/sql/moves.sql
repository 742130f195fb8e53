-- name: insert_move
INSERT INTO moves (id, tenant_id, source_cell, target_cell, step, watermarks) VALUES ($1, $2, $3, $4, 'planned', $5)
RETURNING id, tenant_id, source_cell, target_cell, step, state, watermarks, error, created_at, updated_at

-- name: fetch_move
SELECT id, tenant_id, source_cell, target_cell, step, state, watermarks, error, created_at, updated_at
FROM moves WHERE id = $1

-- name: list_moves
SELECT id, tenant_id, source_cell, target_cell, step, state, watermarks, error, created_at, updated_at,
       extract(epoch FROM now() - updated_at)::float8 AS idle_s
FROM moves WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR tenant_id = $2)
ORDER BY created_at DESC LIMIT $3

-- name: running_move_of_tenant
SELECT id FROM moves WHERE tenant_id = $1 AND state = 'running'

-- name: save_move
-- A step's progress, only while the move runs: an abort in between makes it a no-op (the mover then stops).
UPDATE moves SET step = $2, watermarks = $3, updated_at = now() WHERE id = $1 AND state = 'running'
RETURNING id

-- name: finish_move
UPDATE moves SET state = $2, error = $3, watermarks = coalesce($4, watermarks), updated_at = now()
WHERE id = $1 AND state = ANY($5::text[])
RETURNING id

-- name: abort_move
-- Only while running and before the flip: the flip saves its next step in its route's transaction, so an abort that
-- read the move before it waits for that row and then finds it past the flip (or the flip finds the move aborted).
UPDATE moves SET state = 'aborted', error = $2, updated_at = now()
WHERE id = $1 AND state = 'running' AND step = ANY($3::text[])
RETURNING id

-- name: set_tenant_state
UPDATE tenants SET state = $2, updated_at = now() WHERE id = $1

-- name: lock_move
SELECT pg_try_advisory_lock(hashtextextended('move:' || $1::text, 0))

-- name: unlock_move
SELECT pg_advisory_unlock(hashtextextended('move:' || $1::text, 0))

-- name: set_cell_draining
-- Idempotent; a disabled cell stays disabled (the caller refuses it first).
UPDATE cells SET state = 'draining', updated_at = now() WHERE name = $1 AND state IN ('active', 'draining')
RETURNING name

-- name: tenants_of_cell
SELECT id, state FROM tenants WHERE cell = $1 ORDER BY id

-- name: running_moves_from_cell
SELECT id, tenant_id, target_cell FROM moves WHERE source_cell = $1 AND state = 'running' ORDER BY created_at

-- name: running_moves_into_cell
SELECT id, tenant_id FROM moves WHERE target_cell = $1 AND state = 'running' ORDER BY created_at

-- name: active_cell_loads
-- Tenants per active cell but one, the least loaded first (the order placement uses: tenants, then name).
SELECT c.name, count(t.id) AS tenants FROM cells c LEFT JOIN tenants t ON t.cell = c.name
WHERE c.state = 'active' AND c.name <> $1
GROUP BY c.name ORDER BY count(t.id), c.name

-- name: set_cell_active
-- Undrain: a draining cell takes tenants again (idempotent; a disabled cell stays disabled).
UPDATE cells SET state = 'active', updated_at = now() WHERE name = $1 AND state IN ('active', 'draining')
RETURNING name

-- name: touch_move
-- A live mover's sign of life during a step that saves nothing for a while (a whole-tenant verification, the drill's
-- pause): only while the move runs (an abort meanwhile makes it a no-op, and the mover then stops).
UPDATE moves SET updated_at = now() WHERE id = $1 AND state = 'running' RETURNING id

-- name: running_moves_of
-- The running moves of a tenant, or into or off a cell, with the seconds since a mover last updated each.
SELECT id, tenant_id, source_cell, target_cell, step, state, extract(epoch FROM now() - updated_at)::float8 AS idle_s
FROM moves WHERE state = 'running' AND ($1::text IS NULL OR source_cell = $1 OR target_cell = $1)
  AND ($2::text IS NULL OR tenant_id = $2)
ORDER BY created_at

-- name: tenant_left_cell
-- A cell the tenant moved out of (a finished move off it): it keeps the tenant row, moved_out, and its key hashes.
SELECT EXISTS (SELECT 1 FROM moves WHERE tenant_id = $1 AND source_cell = $2 AND state = 'done')
