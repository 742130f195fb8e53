-- Every read of balances returns the four running sums, the lock version and the amounts computed by
-- ledger_balances (routines/): the balance formulas live there and nowhere else.

-- name: insert_account
WITH a AS (
    INSERT INTO ledger_accounts (id, tenant_id, ledger_id, name, description, normal_balance, currency,
                                 currency_exponent, metadata, sync_only, external_id, ledgerable_type, ledgerable_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
    RETURNING *
), b AS (
    INSERT INTO account_balances (account_id, tenant_id) SELECT id, tenant_id FROM a RETURNING *
)
SELECT a.seq, a.id, a.ledger_id, a.name, a.description, a.normal_balance, a.currency, a.currency_exponent,
       a.metadata, a.sync_only, a.external_id, a.ledgerable_type, a.ledgerable_id, a.created_at,
       a.updated_at,
       b.pending_debits, b.pending_credits, b.posted_debits, b.posted_credits, b.lock_version, lb.*
FROM a, b, ledger_balances(a.normal_balance, b.pending_debits, b.pending_credits, b.posted_debits,
                           b.posted_credits) lb

-- name: fetch_account
SELECT a.seq, a.id, a.ledger_id, a.name, a.description, a.normal_balance, a.currency, a.currency_exponent,
       a.metadata, a.sync_only, a.external_id, a.ledgerable_type, a.ledgerable_id, a.created_at,
       a.updated_at,
       b.pending_debits, b.pending_credits, b.posted_debits, b.posted_credits, b.lock_version, lb.*
FROM ledger_accounts a JOIN account_balances b ON b.account_id = a.id
CROSS JOIN LATERAL ledger_balances(a.normal_balance, b.pending_debits, b.pending_credits, b.posted_debits,
                                   b.posted_credits) lb
WHERE a.tenant_id = $1 AND a.id = $2 AND a.discarded_at IS NULL

-- name: account_ids_by_external_id
-- At most one a ledger among those not discarded (ledger_accounts_external_id, 0207, whose first columns and
-- condition these are).
SELECT id FROM ledger_accounts WHERE tenant_id = $1 AND external_id = $2 AND discarded_at IS NULL

-- name: fetch_account_facts
SELECT id, ledger_id, currency, currency_exponent, normal_balance FROM ledger_accounts
WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND discarded_at IS NULL

-- name: lock_account_row
-- A PATCH's hold on the account's row until it commits: it merges its metadata into what it reads next, so a PATCH
-- at the same time waits, then merges into what this one wrote (no key lost). Postings only read the row (FK).
SELECT 1 FROM ledger_accounts WHERE tenant_id = $1 AND id = $2 AND discarded_at IS NULL FOR NO KEY UPDATE

-- name: update_account
UPDATE ledger_accounts SET name = coalesce($3, name),
    description = CASE WHEN $4 THEN $5 ELSE description END,
    metadata = coalesce($6, metadata), sync_only = coalesce($7, sync_only),
    external_id = CASE WHEN $8 THEN $9 ELSE external_id END, updated_at = now()
WHERE tenant_id = $1 AND id = $2
RETURNING id

-- name: balances_at_lock_version
-- $2 = 0 is the account before its first effect: every sum zero.
SELECT s.pending_debits, s.pending_credits, s.posted_debits, s.posted_credits, s.lock_version, lb.*
FROM (SELECT pending_debits, pending_credits, posted_debits, posted_credits, lock_version
      FROM balance_effects WHERE account_id = $1 AND lock_version = $2
      UNION ALL
      SELECT 0, 0, 0, 0, 0 WHERE $2 = 0) s
CROSS JOIN LATERAL ledger_balances($3, s.pending_debits, s.pending_credits, s.posted_debits, s.posted_credits) lb

-- name: balances_at_effective_time
-- $4: entries at exactly $2 count (balances[effective_at]) or not (the end of a day, balances[as_of_date]).
SELECT s.pending_debits, s.pending_credits, s.posted_debits, s.posted_credits, lb.*
FROM ledger_balance_at($1, $2, $4) s
CROSS JOIN LATERAL ledger_balances($3, s.pending_debits, s.pending_credits, s.posted_debits, s.posted_credits) lb

-- name: balances_in_effective_range
-- [lower, upper): everything before upper minus everything before lower, in one statement (one snapshot).
SELECT s.pending_debits, s.pending_credits, s.posted_debits, s.posted_credits, lb.*
FROM (SELECT hi.pending_debits - lo.pending_debits AS pending_debits,
             hi.pending_credits - lo.pending_credits AS pending_credits,
             hi.posted_debits - lo.posted_debits AS posted_debits,
             hi.posted_credits - lo.posted_credits AS posted_credits
      FROM ledger_balance_at($1, coalesce($3::timestamptz, 'infinity'), false) hi,
           ledger_balance_at($1, coalesce($2::timestamptz, '-infinity'), false) lo) s
CROSS JOIN LATERAL ledger_balances($4, s.pending_debits, s.pending_credits, s.posted_debits, s.posted_credits) lb

-- name: fetch_account_including_unapplied
-- Applied totals plus still-queued effects in ONE statement (one snapshot): a worker committing an apply
-- between two separate reads would otherwise hide its effects from both. Its lock_version counts the queued effects
-- too (each is one version once applied): the version a posting's lock_version is checked against (ledger_check).
SELECT s.*, lb.*
FROM (SELECT a.seq, a.id, a.ledger_id, a.name, a.description, a.normal_balance, a.currency, a.currency_exponent,
             a.metadata, a.sync_only, a.external_id, a.ledgerable_type, a.ledgerable_id, a.created_at,
       a.updated_at,
             b.pending_debits + u.pd AS pending_debits, b.pending_credits + u.pc AS pending_credits,
             b.posted_debits + u.od AS posted_debits, b.posted_credits + u.oc AS posted_credits,
             b.lock_version + u.n AS lock_version
      FROM ledger_accounts a JOIN account_balances b ON b.account_id = a.id
      CROSS JOIN LATERAL (
          SELECT coalesce(sum(d_pending_debits), 0) AS pd, coalesce(sum(d_pending_credits), 0) AS pc,
                 coalesce(sum(d_posted_debits), 0) AS od, coalesce(sum(d_posted_credits), 0) AS oc, count(*) AS n
          FROM balance_effects e WHERE e.account_id = a.id AND e.applied_at IS NULL
      ) u
      WHERE a.tenant_id = $1 AND a.id = $2 AND a.discarded_at IS NULL) s
CROSS JOIN LATERAL ledger_balances(s.normal_balance, s.pending_debits, s.pending_credits, s.posted_debits,
                                   s.posted_credits) lb

-- name: account_has_entries
-- Whether any entry was ever written to the account (ledger_entries_account_seq: one probe).
SELECT EXISTS (SELECT 1 FROM ledger_entries WHERE ledger_account_id = $2 AND tenant_id = $1)

-- name: account_in_use
-- Whether a live balance monitor watches the account, a live category holds it or a draft settlement names it (as
-- settled or contra account: posting it writes to both) (a delete would leave them naming an account not found).
SELECT EXISTS (SELECT 1 FROM ledger_account_balance_monitors
               WHERE ledger_account_id = $2 AND tenant_id = $1 AND discarded_at IS NULL)
    OR EXISTS (SELECT 1 FROM ledger_account_category_members m
               JOIN ledger_account_categories c ON c.id = m.category_id AND c.discarded_at IS NULL
               WHERE m.account_id = $2 AND m.tenant_id = $1 AND m.removed_at IS NULL)
    OR EXISTS (SELECT 1 FROM ledger_account_settlements
               WHERE settled_ledger_account_id = $2 AND tenant_id = $1 AND status = 'drafting')
    OR EXISTS (SELECT 1 FROM ledger_account_settlements
               WHERE contra_ledger_account_id = $2 AND tenant_id = $1 AND status = 'drafting')

-- name: discard_account
-- 0204: a discarded account is not found from then on; its row stays (the audit chain covers it, a move copies it).
UPDATE ledger_accounts SET discarded_at = now(), updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND discarded_at IS NULL
RETURNING discarded_at, updated_at
