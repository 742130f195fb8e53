-- name: post_transaction
SELECT ledger_post($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)

-- name: transition_transaction
SELECT ledger_transition($1, $2, $3, $4, $5, $6, $7, $8)

-- name: fetch_transaction
SELECT seq, id, ledger_id, description, status, effective_at, external_id, metadata, version, reverses_id,
       reversed_by_id, posted_at, archived_at, created_at, updated_at
FROM ledger_transactions WHERE tenant_id = $1 AND id = $2

-- name: fetch_transaction_entries
SELECT e.seq, e.id, e.transaction_id, e.ledger_account_id, e.direction, e.amount, e.effective_at, e.created_at,
       t.status, a.currency, a.currency_exponent, a.normal_balance,
       f.lock_version, f.pending_debits, f.pending_credits, f.posted_debits, f.posted_credits
FROM ledger_entries e
JOIN ledger_transactions t ON t.id = e.transaction_id
JOIN ledger_accounts a ON a.id = e.ledger_account_id
LEFT JOIN balance_effects f ON f.entry_id = e.id AND f.kind = 'entry'
WHERE e.transaction_id = ANY($1::uuid[])
ORDER BY e.seq

-- name: fetch_versions
SELECT transaction_id, version, snapshot, hash, created_at FROM ledger_transaction_versions
WHERE tenant_id = $1 AND transaction_id = $2 ORDER BY version
