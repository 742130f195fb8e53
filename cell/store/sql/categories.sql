-- Ledger account categories, their memberships, edges and closure (see migrations/0050_categories.sql).
-- Balances come from ledger_category_sums / ledger_balances_at and ledger_balances (routines/), never here.

-- name: insert_category
INSERT INTO ledger_account_categories (id, tenant_id, ledger_id, name, description, external_id, normal_balance,
                                       currency, currency_exponent, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING id

-- name: fetch_category_facts
-- The live categories among $2 (for a change to the graph: ledger, currency; no balances).
SELECT id, ledger_id, currency, currency_exponent, normal_balance FROM ledger_account_categories
WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND discarded_at IS NULL

-- name: fetch_category_row
-- One live category without its balances, its row locked: a PATCH compares with it and merges its metadata into
-- it, so a PATCH at the same time waits and then merges into what this one wrote (no key lost).
SELECT id, name, description, external_id, metadata FROM ledger_account_categories
WHERE tenant_id = $1 AND id = $2 AND discarded_at IS NULL
FOR NO KEY UPDATE

-- name: update_category
UPDATE ledger_account_categories SET name = coalesce($3, name),
    description = CASE WHEN $4 THEN $5 ELSE description END,
    external_id = CASE WHEN $6 THEN $7 ELSE external_id END,
    metadata = coalesce($8, metadata), updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND discarded_at IS NULL
RETURNING id

-- name: discard_category
UPDATE ledger_account_categories SET discarded_at = now(), updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND discarded_at IS NULL
RETURNING id

-- name: lock_category_graph
-- Changes to one ledger's category graph take turns: each reads the graph, then writes the closure from it.
SELECT pg_advisory_xact_lock(hashtextextended('categories:' || $1::uuid::text, 0))

-- name: category_ancestors
-- The category and every category above it through live edges.
WITH RECURSIVE up(id) AS (
    SELECT $1::uuid
    UNION
    SELECT e.parent_id FROM up JOIN ledger_account_category_edges e ON e.child_id = up.id AND e.removed_at IS NULL
)
SELECT array_agg(id) FROM up

-- name: category_reach
-- The accounts reachable from a category (its closure).
SELECT coalesce(array_agg(account_id), '{}') FROM ledger_account_category_closure
WHERE category_id = $1 AND reachable

-- name: add_member
INSERT INTO ledger_account_category_members AS m (category_id, account_id, tenant_id) VALUES ($1, $2, $3)
ON CONFLICT (category_id, account_id) DO UPDATE SET removed_at = NULL, created_at = now()
WHERE m.removed_at IS NOT NULL
RETURNING 1

-- name: remove_members
-- Live memberships of category $1 ($2: these accounts; NULL: all of them) end.
UPDATE ledger_account_category_members SET removed_at = now()
WHERE category_id = $1 AND ($2::uuid[] IS NULL OR account_id = ANY($2::uuid[])) AND removed_at IS NULL
RETURNING account_id

-- name: add_edge
INSERT INTO ledger_account_category_edges AS e (parent_id, child_id, tenant_id) VALUES ($1, $2, $3)
ON CONFLICT (parent_id, child_id) DO UPDATE SET removed_at = NULL, created_at = now()
WHERE e.removed_at IS NOT NULL
RETURNING 1

-- name: remove_edges
-- Live edges ending: parent $1 -> child $2, or every edge into or out of category $3.
UPDATE ledger_account_category_edges SET removed_at = now()
WHERE removed_at IS NULL AND ((parent_id = $1 AND child_id = $2) OR parent_id = $3 OR child_id = $3)
RETURNING parent_id, child_id

-- name: refresh_closure
SELECT ledger_category_refresh($1, $2::uuid[], $3::uuid[])
