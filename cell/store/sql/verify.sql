-- The invariant checks (cell/store/verify.py). $1 names the tenant to check, whatever its state (an operator asked,
-- or a move checks its copy); NULL checks the cell: every tenant it serves, not the copies it holds but does not serve
-- (routines/unserved_tenants.sql), inconsistent by nature while a move makes one or a purge deletes one. Read in
-- verify's one REPEATABLE READ snapshot, tenant states and rows alike.

-- name: verify_unbalanced_transactions
SELECT e.transaction_id, a.currency,
       sum(CASE WHEN e.direction = 'debit' THEN e.amount ELSE 0 END) AS debits,
       sum(CASE WHEN e.direction = 'credit' THEN e.amount ELSE 0 END) AS credits
FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.ledger_account_id
WHERE e.tenant_id = $1 OR $1::text IS NULL AND e.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants())
GROUP BY e.transaction_id, a.currency
HAVING sum(CASE WHEN e.direction = 'debit' THEN e.amount ELSE -e.amount END) <> 0
LIMIT 20

-- name: verify_ledger_sums
-- Per ledger and currency, debits equal credits, cache plus still-queued effects.
WITH q AS (
    SELECT account_id, sum(d_pending_debits) pd, sum(d_pending_credits) pc, sum(d_posted_debits) od,
           sum(d_posted_credits) oc
    FROM balance_effects
    WHERE applied_at IS NULL
      AND (tenant_id = $1 OR $1::text IS NULL AND tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()))
    GROUP BY account_id
)
SELECT a.ledger_id, a.currency,
       sum(b.pending_debits + coalesce(q.pd, 0)) AS pending_debits, sum(b.pending_credits + coalesce(q.pc, 0)) AS pending_credits,
       sum(b.posted_debits + coalesce(q.od, 0)) AS posted_debits, sum(b.posted_credits + coalesce(q.oc, 0)) AS posted_credits
FROM ledger_accounts a JOIN account_balances b ON b.account_id = a.id LEFT JOIN q ON q.account_id = a.id
WHERE a.tenant_id = $1 OR $1::text IS NULL AND a.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants())
GROUP BY a.ledger_id, a.currency
HAVING sum(b.pending_debits + coalesce(q.pd, 0)) <> sum(b.pending_credits + coalesce(q.pc, 0))
    OR sum(b.posted_debits + coalesce(q.od, 0)) <> sum(b.posted_credits + coalesce(q.oc, 0))
LIMIT 20

-- name: verify_totals_from_entries
-- The total cache plus queued effects equals the sums recomputed from entries and their status (a discarded
-- entry's is archived, ledger_entry_status);
-- the applied part equals the applied effects, and lock_version counts them.
WITH from_entries AS (
    SELECT e.ledger_account_id AS account_id,
           sum(CASE WHEN e.direction = 'debit' AND s.status <> 'archived' THEN e.amount ELSE 0 END) AS pd,
           sum(CASE WHEN e.direction = 'credit' AND s.status <> 'archived' THEN e.amount ELSE 0 END) AS pc,
           sum(CASE WHEN e.direction = 'debit' AND s.status = 'posted' THEN e.amount ELSE 0 END) AS od,
           sum(CASE WHEN e.direction = 'credit' AND s.status = 'posted' THEN e.amount ELSE 0 END) AS oc
    FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
    CROSS JOIN LATERAL (SELECT ledger_entry_status(e.version, t.entries_version, t.status) AS status) s
    WHERE e.tenant_id = $1 OR $1::text IS NULL AND e.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants())
    GROUP BY e.ledger_account_id
), effects AS (
    SELECT account_id,
           sum(d_pending_debits) AS pd, sum(d_pending_credits) AS pc, sum(d_posted_debits) AS od, sum(d_posted_credits) AS oc,
           sum(d_pending_debits) FILTER (WHERE applied_at IS NOT NULL) AS apd,
           sum(d_pending_credits) FILTER (WHERE applied_at IS NOT NULL) AS apc,
           sum(d_posted_debits) FILTER (WHERE applied_at IS NOT NULL) AS aod,
           sum(d_posted_credits) FILTER (WHERE applied_at IS NOT NULL) AS aoc,
           count(*) FILTER (WHERE applied_at IS NOT NULL) AS applied,
           max(lock_version) AS max_version
    FROM balance_effects
    WHERE tenant_id = $1 OR $1::text IS NULL AND tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants())
    GROUP BY account_id
)
SELECT b.account_id, b.pending_debits, b.pending_credits, b.posted_debits, b.posted_credits, b.lock_version,
       coalesce(x.pd, 0) AS e_pd, coalesce(x.pc, 0) AS e_pc, coalesce(x.od, 0) AS e_od, coalesce(x.oc, 0) AS e_oc,
       coalesce(f.pd, 0) AS f_pd, coalesce(f.pc, 0) AS f_pc, coalesce(f.od, 0) AS f_od, coalesce(f.oc, 0) AS f_oc,
       coalesce(f.applied, 0) AS applied, f.max_version
FROM account_balances b
LEFT JOIN from_entries x ON x.account_id = b.account_id
LEFT JOIN effects f ON f.account_id = b.account_id
WHERE (b.tenant_id = $1 OR $1::text IS NULL AND b.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants())) AND (
    coalesce(x.pd, 0) <> coalesce(f.pd, 0) OR coalesce(x.pc, 0) <> coalesce(f.pc, 0)
    OR coalesce(x.od, 0) <> coalesce(f.od, 0) OR coalesce(x.oc, 0) <> coalesce(f.oc, 0)
    OR b.pending_debits <> coalesce(f.apd, 0) OR b.pending_credits <> coalesce(f.apc, 0)
    OR b.posted_debits <> coalesce(f.aod, 0) OR b.posted_credits <> coalesce(f.aoc, 0)
    OR b.lock_version <> coalesce(f.applied, 0) OR b.lock_version <> coalesce(f.max_version, 0))
LIMIT 20

-- name: verify_resulting_balances
-- Each applied effect's resulting balances are the running sums in lock-version order.
SELECT account_id, lock_version FROM (
    SELECT account_id, lock_version, pending_debits, pending_credits, posted_debits, posted_credits,
           row_number() OVER w AS rn,
           sum(d_pending_debits) OVER w AS rpd, sum(d_pending_credits) OVER w AS rpc,
           sum(d_posted_debits) OVER w AS rod, sum(d_posted_credits) OVER w AS roc
    FROM balance_effects
    WHERE applied_at IS NOT NULL
      AND (tenant_id = $1 OR $1::text IS NULL AND tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()))
    WINDOW w AS (PARTITION BY account_id ORDER BY lock_version ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
) s
WHERE lock_version <> rn OR pending_debits <> rpd OR pending_credits <> rpc OR posted_debits <> rod OR posted_credits <> roc
LIMIT 20

-- name: verify_effective_buckets
WITH expected AS (
    SELECT account_id, (effective_at AT TIME ZONE 'UTC')::date AS day,
           sum(d_pending_debits) pd, sum(d_pending_credits) pc, sum(d_posted_debits) od, sum(d_posted_credits) oc
    FROM balance_effects
    WHERE applied_at IS NOT NULL
      AND (tenant_id = $1 OR $1::text IS NULL AND tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()))
    GROUP BY 1, 2
), actual AS (
    SELECT k.* FROM effective_balance_buckets k JOIN account_balances b ON b.account_id = k.account_id
    WHERE b.tenant_id = $1 OR $1::text IS NULL AND b.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants())
)
SELECT coalesce(e.account_id, a.account_id) AS account_id, coalesce(e.day, a.day) AS day
FROM expected e FULL JOIN actual a ON a.account_id = e.account_id AND a.day = e.day
WHERE coalesce(e.pd, 0) <> coalesce(a.pending_debits, 0) OR coalesce(e.pc, 0) <> coalesce(a.pending_credits, 0)
   OR coalesce(e.od, 0) <> coalesce(a.posted_debits, 0) OR coalesce(e.oc, 0) <> coalesce(a.posted_credits, 0)
LIMIT 20

-- name: verify_entry_effects
-- Every entry has exactly its creation effect, and a post/archive effect exactly when its transaction moved (a
-- discarded entry: archived, never posted);
-- the entries of a transaction archived from its first version (created archived, or on a balance lock failure)
-- have none at all (nothing of it counted).
SELECT e.id, s.status, count(f.*) FILTER (WHERE f.kind = 'entry') AS created,
       count(f.*) FILTER (WHERE f.kind = 'post') AS posted, count(f.*) FILTER (WHERE f.kind = 'archive') AS archived
FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
CROSS JOIN LATERAL (SELECT ledger_entry_status(e.version, t.entries_version, t.status) AS status) s
LEFT JOIN ledger_transaction_versions v1 ON v1.transaction_id = t.id AND v1.version = 1
LEFT JOIN balance_effects f ON f.entry_id = e.id
WHERE e.tenant_id = $1 OR $1::text IS NULL AND e.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants())
GROUP BY e.id, s.status, t.posted_at, t.created_at, v1.snapshot ->> 'status'
HAVING CASE WHEN v1.snapshot ->> 'status' = 'archived' THEN count(f.*) <> 0
       ELSE count(f.*) FILTER (WHERE f.kind = 'entry') <> 1
         OR count(f.*) FILTER (WHERE f.kind = 'archive') <> (CASE WHEN s.status = 'archived' THEN 1 ELSE 0 END)
         OR count(f.*) FILTER (WHERE f.kind = 'post') > (CASE WHEN s.status = 'posted' THEN 1 ELSE 0 END) END
LIMIT 20

-- name: verify_stale_unapplied
-- The sweeper's bound, but for the copies the cell does not serve, named or not (a moved-out tenant's, kept until
-- purged, applied by its target cell; a move's copy being made, applied once unfrozen: worker.sql's
-- worker_queue_gauges).
SELECT count(*) AS n, min(created_at) AS oldest FROM balance_effects
WHERE applied_at IS NULL AND created_at < now() - make_interval(secs => $2) AND ($1::text IS NULL OR tenant_id = $1)
  AND tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants())

-- name: verify_versions
SELECT transaction_id, version, snapshot, prev_hash, hash FROM ledger_transaction_versions
WHERE tenant_id = $1 OR $1::text IS NULL AND tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants())
ORDER BY transaction_id, version

-- name: verify_transaction_versions_present
SELECT t.id, t.version, count(v.*) AS versions FROM ledger_transactions t
LEFT JOIN ledger_transaction_versions v ON v.transaction_id = t.id
WHERE t.tenant_id = $1 OR $1::text IS NULL AND t.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants())
GROUP BY t.id, t.version HAVING count(v.*) <> t.version
LIMIT 20

-- name: verify_transaction_times
-- A transaction is changed when it is written, posted or archived, and later only: lists of transactions posted
-- since a time read those changed since it (store.changes).
SELECT t.id, t.created_at, t.posted_at, t.archived_at, t.updated_at FROM ledger_transactions t
WHERE (t.tenant_id = $1 OR $1::text IS NULL AND t.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()))
  AND (t.updated_at < t.created_at OR t.updated_at < t.posted_at OR t.updated_at < t.archived_at)
LIMIT 20

-- name: verify_entry_times
-- An entry is written with its transaction, and effective when it is (a discarded one: when it was): lists of entries
-- changed since a time read those of the transactions changed since it (store.changes), lists of entries effective in
-- a window those of the transactions effective in it (store.entries.transactions_within).
SELECT e.id, e.created_at, e.effective_at, t.updated_at AS transaction_updated_at,
       t.effective_at AS transaction_effective_at
FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
WHERE (e.tenant_id = $1 OR $1::text IS NULL AND e.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()))
  AND (e.created_at > t.updated_at
       OR (e.effective_at <> t.effective_at AND ledger_entry_live(e.version, t.entries_version)))
LIMIT 20

-- name: verify_insert_only_triggers
SELECT count(*) FROM pg_trigger
WHERE tgname IN ('ledger_entries_insert_only', 'ledger_transaction_versions_insert_only') AND tgenabled <> 'D'

-- name: verify_version_hashes
SELECT transaction_id, version FROM ledger_transaction_versions
WHERE (tenant_id = $1 OR $1::text IS NULL AND tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()))
  AND hash <> ledger_version_hash(prev_hash, snapshot)
LIMIT 20

-- name: verify_statements
-- A statement's balances are recomputed from its account's balance effects applied by its lock version,
-- effective before each bound.
SELECT s.id FROM ledger_account_statements s
CROSS JOIN LATERAL (
    SELECT coalesce(sum(f.d_pending_debits) FILTER (WHERE f.effective_at < s.effective_at_lower_bound), 0) AS lpd,
           coalesce(sum(f.d_pending_credits) FILTER (WHERE f.effective_at < s.effective_at_lower_bound), 0) AS lpc,
           coalesce(sum(f.d_posted_debits) FILTER (WHERE f.effective_at < s.effective_at_lower_bound), 0) AS lod,
           coalesce(sum(f.d_posted_credits) FILTER (WHERE f.effective_at < s.effective_at_lower_bound), 0) AS loc,
           coalesce(sum(f.d_pending_debits) FILTER (WHERE f.effective_at < s.effective_at_upper_bound), 0) AS hpd,
           coalesce(sum(f.d_pending_credits) FILTER (WHERE f.effective_at < s.effective_at_upper_bound), 0) AS hpc,
           coalesce(sum(f.d_posted_debits) FILTER (WHERE f.effective_at < s.effective_at_upper_bound), 0) AS hod,
           coalesce(sum(f.d_posted_credits) FILTER (WHERE f.effective_at < s.effective_at_upper_bound), 0) AS hoc
    FROM balance_effects f
    WHERE f.account_id = s.ledger_account_id AND f.lock_version <= s.ledger_account_lock_version
) r
WHERE (s.tenant_id = $1 OR $1::text IS NULL AND s.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()))
  AND (s.starting_pending_debits, s.starting_pending_credits, s.starting_posted_debits, s.starting_posted_credits,
       s.ending_pending_debits, s.ending_pending_credits, s.ending_posted_debits, s.ending_posted_credits)
      IS DISTINCT FROM (r.lpd, r.lpc, r.lod, r.loc, r.hpd, r.hpc, r.hod, r.hoc)
LIMIT 20

-- name: verify_monitors
-- Every live balance monitor is evaluated: its account is flagged monitored (ledger_apply calls ledger_monitor for
-- flagged accounts only: unflagged, the monitor would never trigger again), it was never evaluated past the account,
-- and, evaluated up to the account's lock version, its `triggered` is its condition on the account's balances.
SELECT m.id, m.ledger_account_id, b.monitored, m.triggered, m.lock_version, b.lock_version AS account_lock_version,
       h.holds
FROM ledger_account_balance_monitors m JOIN ledger_accounts a ON a.id = m.ledger_account_id
JOIN account_balances b ON b.account_id = m.ledger_account_id
CROSS JOIN LATERAL ledger_balances(a.normal_balance, b.pending_debits, b.pending_credits, b.posted_debits,
                                   b.posted_credits) lb
CROSS JOIN LATERAL (SELECT ledger_monitor_holds(m.alert_field, m.alert_operator, m.alert_value, lb.pending_amount,
                                                lb.posted_amount, lb.available_amount, b.lock_version) AS holds) h
WHERE m.discarded_at IS NULL
  AND (m.tenant_id = $1 OR $1::text IS NULL AND m.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()))
  AND (NOT b.monitored OR m.lock_version > b.lock_version
       OR (m.lock_version = b.lock_version AND m.triggered IS DISTINCT FROM h.holds))
LIMIT 20

-- name: verify_settlements
-- An entry a settlement holds is a posted entry of its settled account effective before its upper bound, and an
-- archived settlement holds none (each entry is held once: the primary key of ledger_account_settlement_entries).
-- A settlement's amount is the net of the entries it holds (in its settled account's normal direction), and a
-- pending or posted one with an amount has its transaction: the settled account's entry of that amount in
-- settlement_entry_direction (against the net), with the settlement's status.
WITH held AS (
    SELECT c.settlement_id, sum(CASE WHEN e.direction = a.normal_balance THEN e.amount ELSE -e.amount END) AS net,
           bool_and(e.ledger_account_id = s.settled_ledger_account_id AND t.status = 'posted'
                    AND e.effective_at < s.effective_at_upper_bound AND e.tenant_id = s.tenant_id
                    AND ledger_entry_live(e.version, t.entries_version)) AS fit
    FROM ledger_account_settlement_entries c
    JOIN ledger_account_settlements s ON s.id = c.settlement_id
    JOIN ledger_accounts a ON a.id = s.settled_ledger_account_id
    JOIN ledger_entries e ON e.id = c.entry_id JOIN ledger_transactions t ON t.id = e.transaction_id
    WHERE c.role = 'settled'
      AND (c.tenant_id = $1 OR $1::text IS NULL AND c.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()))
    GROUP BY c.settlement_id
), leg AS (
    SELECT c.settlement_id, e.amount, e.direction, e.ledger_account_id, e.transaction_id, t.status
    FROM ledger_account_settlement_entries c
    JOIN ledger_entries e ON e.id = c.entry_id JOIN ledger_transactions t ON t.id = e.transaction_id
    WHERE c.role = 'offset'
      AND (c.tenant_id = $1 OR $1::text IS NULL AND c.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()))
)
SELECT s.id, s.status, s.amount, h.net, h.fit, l.amount AS leg_amount, l.status AS leg_status
FROM ledger_account_settlements s
JOIN ledger_accounts a ON a.id = s.settled_ledger_account_id
LEFT JOIN held h ON h.settlement_id = s.id
LEFT JOIN leg l ON l.settlement_id = s.id
WHERE (s.tenant_id = $1 OR $1::text IS NULL AND s.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants())) AND (
    NOT coalesce(h.fit, true)
    OR (s.status = 'archived' AND (h.settlement_id IS NOT NULL OR l.status <> 'archived'))
    OR (s.status <> 'archived' AND s.amount IS DISTINCT FROM abs(coalesce(h.net, 0))
        AND NOT (s.status = 'drafting' AND s.amount IS NULL))
    OR (s.status IN ('pending', 'posted') AND (
        (coalesce(s.amount, 0) > 0) <> (l.settlement_id IS NOT NULL)
        OR (s.amount > 0 AND (l.amount <> s.amount OR l.ledger_account_id <> s.settled_ledger_account_id
            OR l.transaction_id IS DISTINCT FROM s.ledger_transaction_id OR l.status <> s.status
            OR l.direction IS DISTINCT FROM s.settlement_entry_direction
            OR s.settlement_entry_direction <> CASE WHEN (h.net > 0) = (a.normal_balance = 'credit')
                                                    THEN 'debit' ELSE 'credit' END))))
)
-- name: verify_category_closure
-- Each category's stored closure is what its graph reaches (live edges down, then live memberships), pair by
-- pair; and no category reaches itself (a cycle).
WITH RECURSIVE down(root, id) AS (
    SELECT id, id FROM ledger_account_categories
    WHERE tenant_id = $1 OR $1::text IS NULL AND tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants())
    UNION
    SELECT d.root, e.child_id FROM down d
    JOIN ledger_account_category_edges e ON e.parent_id = d.id AND e.removed_at IS NULL
), expected AS (
    SELECT DISTINCT d.root AS category_id, m.account_id FROM down d
    JOIN ledger_account_category_members m ON m.category_id = d.id AND m.removed_at IS NULL
), stored AS (
    SELECT category_id, account_id FROM ledger_account_category_closure
    WHERE reachable
      AND (tenant_id = $1 OR $1::text IS NULL AND tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()))
)
SELECT coalesce(x.category_id, s.category_id) AS category_id, coalesce(x.account_id, s.account_id) AS account_id,
       x.category_id IS NOT NULL AS reachable, s.category_id IS NOT NULL AS stored, false AS cycle
FROM expected x FULL JOIN stored s ON s.category_id = x.category_id AND s.account_id = x.account_id
WHERE x.category_id IS NULL OR s.category_id IS NULL
UNION ALL
SELECT DISTINCT d.root, NULL::uuid, NULL::boolean, NULL::boolean, true FROM down d
JOIN ledger_account_category_edges e ON e.parent_id = d.id AND e.child_id = d.root AND e.removed_at IS NULL
LIMIT 20

-- name: verify_category_books
-- Every account a category reaches is of the category's ledger and currency (at its exponent).
SELECT r.category_id, r.account_id, c.ledger_id, c.currency, a.ledger_id AS account_ledger_id,
       a.currency AS account_currency
FROM ledger_account_category_closure r JOIN ledger_account_categories c ON c.id = r.category_id
JOIN ledger_accounts a ON a.id = r.account_id
WHERE r.reachable
  AND (r.tenant_id = $1 OR $1::text IS NULL AND r.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()))
  AND (a.ledger_id <> c.ledger_id OR a.currency <> c.currency OR a.currency_exponent <> c.currency_exponent)
LIMIT 20

-- name: verify_category_balances
-- A category's balances as reads compute them (ledger_category_sums) equal the sums of the balances of every
-- account its graph reaches (each account's cache equals its entries: verify_totals_from_entries); queued
-- effects are added on both sides. Bounded by the graph, not by the history: a move rechecks it in its freeze.
WITH RECURSIVE down(root, id) AS (
    SELECT id, id FROM ledger_account_categories
    WHERE (tenant_id = $1 OR $1::text IS NULL AND tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()))
      AND discarded_at IS NULL
    UNION
    SELECT d.root, e.child_id FROM down d
    JOIN ledger_account_category_edges e ON e.parent_id = d.id AND e.removed_at IS NULL
), expected AS (
    SELECT DISTINCT d.root AS category_id, m.account_id FROM down d
    JOIN ledger_account_category_members m ON m.category_id = d.id AND m.removed_at IS NULL
), queued_by_account AS (
    SELECT f.account_id, sum(f.d_pending_debits) AS pd, sum(f.d_pending_credits) AS pc,
           sum(f.d_posted_debits) AS od, sum(f.d_posted_credits) AS oc
    FROM balance_effects f
    WHERE f.applied_at IS NULL AND f.account_id IN (
        SELECT account_id FROM expected UNION
        SELECT account_id FROM ledger_account_category_closure
        WHERE reachable
          AND (tenant_id = $1 OR $1::text IS NULL AND tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants())))
    GROUP BY f.account_id
), from_accounts AS (
    SELECT x.category_id, sum(b.pending_debits + coalesce(q.pd, 0)) AS pd,
           sum(b.pending_credits + coalesce(q.pc, 0)) AS pc, sum(b.posted_debits + coalesce(q.od, 0)) AS od,
           sum(b.posted_credits + coalesce(q.oc, 0)) AS oc
    FROM expected x JOIN account_balances b ON b.account_id = x.account_id
    LEFT JOIN queued_by_account q ON q.account_id = x.account_id
    GROUP BY x.category_id
), queued AS (
    SELECT r.category_id, sum(q.pd) AS pd, sum(q.pc) AS pc, sum(q.od) AS od, sum(q.oc) AS oc
    FROM ledger_account_category_closure r JOIN queued_by_account q ON q.account_id = r.account_id
    WHERE r.reachable
      AND (r.tenant_id = $1 OR $1::text IS NULL AND r.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()))
    GROUP BY r.category_id
)
SELECT c.id AS category_id,
       s.pending_debits + coalesce(q.pd, 0) AS pd, s.pending_credits + coalesce(q.pc, 0) AS pc,
       s.posted_debits + coalesce(q.od, 0) AS od, s.posted_credits + coalesce(q.oc, 0) AS oc,
       coalesce(x.pd, 0) AS e_pd, coalesce(x.pc, 0) AS e_pc, coalesce(x.od, 0) AS e_od, coalesce(x.oc, 0) AS e_oc
FROM ledger_account_categories c CROSS JOIN LATERAL ledger_category_sums(c.id) s
LEFT JOIN from_accounts x ON x.category_id = c.id LEFT JOIN queued q ON q.category_id = c.id
WHERE (c.tenant_id = $1 OR $1::text IS NULL AND c.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()))
  AND c.discarded_at IS NULL
  AND (s.pending_debits + coalesce(q.pd, 0) <> coalesce(x.pd, 0)
    OR s.pending_credits + coalesce(q.pc, 0) <> coalesce(x.pc, 0)
    OR s.posted_debits + coalesce(q.od, 0) <> coalesce(x.od, 0)
    OR s.posted_credits + coalesce(q.oc, 0) <> coalesce(x.oc, 0))
LIMIT 20
