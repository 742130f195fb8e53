-- name: insert_ledger
INSERT INTO ledgers (id, tenant_id, name, description, metadata) VALUES ($1, $2, $3, $4, $5)
RETURNING seq, id, name, description, metadata, created_at, updated_at

-- name: fetch_ledger
SELECT seq, id, name, description, metadata, created_at, updated_at FROM ledgers WHERE tenant_id = $1 AND id = $2

-- name: update_ledger
UPDATE ledgers SET name = coalesce($3, name), description = CASE WHEN $4 THEN $5 ELSE description END,
    metadata = coalesce($6, metadata), updated_at = now()
WHERE tenant_id = $1 AND id = $2
RETURNING seq, id, name, description, metadata, created_at, updated_at

-- name: fetch_ledger_exists
SELECT 1 FROM ledgers WHERE tenant_id = $1 AND id = $2
