-- name: insert_ledger
INSERT INTO ledgers (id, tenant_id, name, description, metadata) VALUES ($1, $2, $3, $4, $5)
RETURNING seq, id, name, description, metadata, created_at, updated_at

-- name: fetch_ledger
SELECT seq, id, name, description, metadata, created_at, updated_at FROM ledgers
WHERE tenant_id = $1 AND id = $2 AND discarded_at IS NULL

-- name: lock_ledger_row
-- A PATCH's hold on the ledger's row, as lock_account_row (accounts.sql).
SELECT 1 FROM ledgers WHERE tenant_id = $1 AND id = $2 AND discarded_at IS NULL FOR NO KEY UPDATE

-- name: update_ledger
UPDATE ledgers SET name = coalesce($3, name), description = CASE WHEN $4 THEN $5 ELSE description END,
    metadata = coalesce($6, metadata), updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND discarded_at IS NULL
RETURNING seq, id, name, description, metadata, created_at, updated_at

-- name: fetch_ledger_exists
SELECT 1 FROM ledgers WHERE tenant_id = $1 AND id = $2 AND discarded_at IS NULL

-- name: ledger_holds_anything
-- Whether the ledger holds an account or a category not discarded (ledger_accounts_ledger and
-- ledger_account_categories' ledger index: a probe each).
SELECT EXISTS (SELECT 1 FROM ledger_accounts WHERE tenant_id = $1 AND ledger_id = $2 AND discarded_at IS NULL)
    OR EXISTS (SELECT 1 FROM ledger_account_categories
               WHERE tenant_id = $1 AND ledger_id = $2 AND discarded_at IS NULL)

-- name: discard_ledger
-- 0205: a discarded ledger is not found from then on; its row stays.
UPDATE ledgers SET discarded_at = now(), updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND discarded_at IS NULL
RETURNING discarded_at, updated_at
