-- name: fetch_accounts_current
-- fetch_account's row for each of many accounts of one tenant (their current balances, one snapshot): one primary-key
-- probe per id, whatever the batch (routines/accounts_current.sql).
SELECT * FROM ledger_accounts_current($1, $2::uuid[])
