-- Ledger account settlements and the entries they hold (0061). An entry is claimed by one settlement at a time:
-- every claim is an upsert on the entry's row that only takes a released one (settlement_id NULL), so two
-- settlements racing for an entry cannot both get it, whatever the checks before.

-- name: insert_settlement
-- No upper bound given: its created_at (Modern Treasury's default), the same now().
INSERT INTO ledger_account_settlements (id, tenant_id, ledger_id, settled_ledger_account_id, contra_ledger_account_id,
    currency, currency_exponent, status, allow_either_direction, effective_at_upper_bound, description, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10, now()), $11, $12)

-- name: fetch_settlement
SELECT s.*, a.normal_balance FROM ledger_account_settlements s
JOIN ledger_accounts a ON a.id = s.settled_ledger_account_id
WHERE s.tenant_id = $1 AND s.id = $2

-- name: lock_settlement
SELECT s.*, a.normal_balance FROM ledger_account_settlements s
JOIN ledger_accounts a ON a.id = s.settled_ledger_account_id
WHERE s.tenant_id = $1 AND s.id = $2
FOR UPDATE OF s

-- name: claim_gathered_entries
-- The settled account's posted entries (not discarded, 0206) effective before the upper bound that no settlement holds.
INSERT INTO ledger_account_settlement_entries AS c (entry_id, tenant_id, settlement_id, role)
SELECT e.id, $1, $2, 'settled'
FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
WHERE e.ledger_account_id = $3 AND e.effective_at < $4 AND e.tenant_id = $1 AND t.status = 'posted'
  AND ledger_entry_live(e.version, t.entries_version)
  AND NOT EXISTS (SELECT 1 FROM ledger_account_settlement_entries x WHERE x.entry_id = e.id
                  AND x.settlement_id IS NOT NULL)
ORDER BY e.id  -- every claim takes entries' rows in id order: racing settlements wait, never deadlock
LIMIT $5        -- the caller passes one over its bound: claiming that many means too many
ON CONFLICT (entry_id) DO UPDATE SET settlement_id = excluded.settlement_id, updated_at = now()
WHERE c.settlement_id IS NULL AND c.role = 'settled'

-- name: settleable_entries
-- Of the ids given, the tenant's posted entries on the settled account effective before the upper bound.
SELECT e.id FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
WHERE e.tenant_id = $1 AND e.id = ANY($2::uuid[]) AND e.ledger_account_id = $3 AND e.effective_at < $4
  AND t.status = 'posted' AND ledger_entry_live(e.version, t.entries_version)

-- name: claim_entries
-- Returns the entries this settlement holds now (taken, or held already); the others are held elsewhere.
INSERT INTO ledger_account_settlement_entries AS c (entry_id, tenant_id, settlement_id, role)
SELECT id, $1, $2, 'settled' FROM unnest($3::uuid[]) AS id ORDER BY id
ON CONFLICT (entry_id) DO UPDATE SET settlement_id = excluded.settlement_id, updated_at = now()
WHERE c.role = 'settled' AND (c.settlement_id IS NULL OR c.settlement_id = excluded.settlement_id)
RETURNING entry_id

-- name: held_entries
-- Of the ids given, those the settlement holds.
SELECT entry_id FROM ledger_account_settlement_entries WHERE settlement_id = $1 AND entry_id = ANY($2::uuid[])
  AND role = 'settled'

-- name: count_held_entries
-- How many entries the settlement holds, counted up to $2.
SELECT count(*) FROM (SELECT 1 FROM ledger_account_settlement_entries WHERE settlement_id = $1 AND role = 'settled'
                      LIMIT $2) h

-- name: claim_offset_entry
INSERT INTO ledger_account_settlement_entries (entry_id, tenant_id, settlement_id, role)
VALUES ($3, $1, $2, 'offset')

-- name: release_entries
-- $3 NULL: every entry the settlement holds.
UPDATE ledger_account_settlement_entries SET settlement_id = NULL, updated_at = now()
WHERE tenant_id = $1 AND settlement_id = $2 AND role = 'settled' AND ($3::uuid[] IS NULL OR entry_id = ANY($3))

-- name: settled_net
-- The held entries' sum in the direction $2 (the settled account's normal balance): what the settlement offsets.
SELECT coalesce(sum(CASE WHEN e.direction = $2 THEN e.amount ELSE -e.amount END), 0)
FROM ledger_account_settlement_entries c JOIN ledger_entries e ON e.id = c.entry_id
WHERE c.settlement_id = $1 AND c.role = 'settled'

-- name: set_settlement_outcome
UPDATE ledger_account_settlements
SET status = $3, amount = $4, settlement_entry_direction = $5, ledger_transaction_id = coalesce($6, ledger_transaction_id),
    updated_at = now()
WHERE tenant_id = $1 AND id = $2

-- name: update_settlement
UPDATE ledger_account_settlements
SET description = CASE WHEN $3 THEN $4 ELSE description END, metadata = coalesce($5, metadata), updated_at = now()
WHERE tenant_id = $1 AND id = $2

-- name: settlement_of_transaction
SELECT id FROM ledger_account_settlements WHERE tenant_id = $1 AND ledger_transaction_id = $2
