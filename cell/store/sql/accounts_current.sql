-- name: fetch_accounts_current
-- fetch_account's row for each of many accounts of one tenant (their current balances, one snapshot): one primary-key
-- probe per id, whatever the plan (unnest: no id = ANY scan that a generic plan could take by tenant_id instead).
SELECT a.seq, a.id, a.ledger_id, a.name, a.description, a.normal_balance, a.currency, a.currency_exponent,
       a.metadata, a.sync_only, a.created_at, a.updated_at,
       b.pending_debits, b.pending_credits, b.posted_debits, b.posted_credits, b.lock_version, lb.*
FROM unnest($2::uuid[]) AS wanted(id)
JOIN ledger_accounts a ON a.id = wanted.id
JOIN account_balances b ON b.account_id = a.id
CROSS JOIN LATERAL ledger_balances(a.normal_balance, b.pending_debits, b.pending_credits, b.posted_debits,
                                   b.posted_credits) lb
WHERE a.tenant_id = $1
