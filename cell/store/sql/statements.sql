-- Ledger account statements. Created with the account's balance row locked and its queued effects folded in
-- (ledger_apply, first), so the lock version and both balances are read at one point of the account's history;
-- balances at a bound come from ledger_balance_at (everything effective before the bound: the lower bound is
-- inclusive for the statement's entries, so the starting balance excludes them). Its snapshot and clock then say
-- which transaction versions were committed at that point (0217).

-- name: insert_statement
INSERT INTO ledger_account_statements (
    id, tenant_id, ledger_id, ledger_account_id, description, metadata, effective_at_lower_bound,
    effective_at_upper_bound, ledger_account_lock_version,
    starting_pending_debits, starting_pending_credits, starting_posted_debits, starting_posted_credits,
    ending_pending_debits, ending_pending_credits, ending_posted_debits, ending_posted_credits,
    versions_snapshot, versions_at)
SELECT $1, $2, a.ledger_id, a.id, $4, $5, $6, $7, b.lock_version,
       lo.pending_debits, lo.pending_credits, lo.posted_debits, lo.posted_credits,
       hi.pending_debits, hi.pending_credits, hi.posted_debits, hi.posted_credits,
       pg_current_snapshot(), clock_timestamp()
FROM ledger_accounts a JOIN account_balances b ON b.account_id = a.id,
     ledger_balance_at(a.id, $6, false) lo, ledger_balance_at(a.id, $7, false) hi
WHERE a.tenant_id = $2 AND a.id = $3
RETURNING id

-- name: fetch_statement
SELECT s.seq, s.id, s.ledger_id, s.ledger_account_id, s.description, s.metadata, s.effective_at_lower_bound,
       s.effective_at_upper_bound, s.ledger_account_lock_version, s.created_at, a.normal_balance, a.currency,
       a.currency_exponent,
       s.starting_pending_debits, s.starting_pending_credits, s.starting_posted_debits, s.starting_posted_credits,
       lo.pending_amount AS starting_pending_amount, lo.posted_amount AS starting_posted_amount,
       lo.available_debits AS starting_available_debits, lo.available_credits AS starting_available_credits,
       lo.available_amount AS starting_available_amount,
       s.ending_pending_debits, s.ending_pending_credits, s.ending_posted_debits, s.ending_posted_credits,
       hi.pending_amount AS ending_pending_amount, hi.posted_amount AS ending_posted_amount,
       hi.available_debits AS ending_available_debits, hi.available_credits AS ending_available_credits,
       hi.available_amount AS ending_available_amount
FROM ledger_account_statements s JOIN ledger_accounts a ON a.id = s.ledger_account_id
CROSS JOIN LATERAL ledger_balances(a.normal_balance, s.starting_pending_debits, s.starting_pending_credits,
                                   s.starting_posted_debits, s.starting_posted_credits) lo
CROSS JOIN LATERAL ledger_balances(a.normal_balance, s.ending_pending_debits, s.ending_pending_credits,
                                   s.ending_posted_debits, s.ending_posted_credits) hi
WHERE s.tenant_id = $1 AND s.id = $2

-- name: fold_account_effects
SELECT ledger_apply(ARRAY[$1::uuid], $2::text)
