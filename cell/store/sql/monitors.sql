-- name: lock_monitored_account
-- The balance row of a live account of the tenant, locked (FOR UPDATE, as ledger_apply takes it) in a statement of
-- its own: insert_monitor, the next one, reads the row in a snapshot taken after the lock, so it sees the flag as a
-- monitor's delete that held the lock left it (in one statement, the flag read before the wait looked set, was
-- left cleared, and the new monitor was never evaluated).
SELECT b.account_id FROM account_balances b JOIN ledger_accounts a ON a.id = b.account_id
WHERE b.account_id = $2 AND b.tenant_id = $1 AND a.discarded_at IS NULL
FOR UPDATE OF b

-- name: insert_monitor
-- Under the account's balance row lock (lock_monitored_account): the state is evaluated at the current lock
-- version, and ledger_apply evaluates every later one (the account is flagged monitored).
WITH b AS (
    SELECT b.account_id, b.lock_version, lb.pending_amount, lb.posted_amount, lb.available_amount
    FROM account_balances b JOIN ledger_accounts a ON a.id = b.account_id
    CROSS JOIN LATERAL ledger_balances(a.normal_balance, b.pending_debits, b.pending_credits, b.posted_debits,
                                       b.posted_credits) lb
    WHERE b.account_id = $3 AND b.tenant_id = $2 AND a.discarded_at IS NULL
    FOR UPDATE OF b
), flag AS (
    UPDATE account_balances SET monitored = true FROM b WHERE account_balances.account_id = b.account_id
      AND NOT account_balances.monitored
)
INSERT INTO ledger_account_balance_monitors (id, tenant_id, ledger_account_id, description, alert_field,
                                             alert_operator, alert_value, metadata, triggered, lock_version)
SELECT $1, $2, b.account_id, $4, $5, $6, $7, $8,
       ledger_monitor_holds($5, $6, $7, b.pending_amount, b.posted_amount, b.available_amount, b.lock_version),
       b.lock_version
FROM b
RETURNING id

-- name: update_monitor
UPDATE ledger_account_balance_monitors
SET description = CASE WHEN $3 THEN $4 ELSE description END, metadata = coalesce($5, metadata), updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND discarded_at IS NULL
RETURNING id

-- name: lock_monitor_account
-- The balance row of a live monitor's account, locked (ledger_apply's lock order: balance row, then monitor) in a
-- statement of its own: discard_monitor, the next one, then reads the account's monitors in a snapshot taken after
-- the lock, so a monitor created by whoever held it is seen (in one statement, the snapshot taken before the wait
-- missed it, and the flag was cleared under a live monitor that was then never evaluated).
SELECT b.account_id FROM account_balances b
JOIN ledger_account_balance_monitors m ON m.ledger_account_id = b.account_id
WHERE m.tenant_id = $1 AND m.id = $2 AND m.discarded_at IS NULL
FOR UPDATE OF b

-- name: discard_monitor
-- Under the balance row lock lock_monitor_account took, its flag cleared when no live monitor is left.
WITH b AS (
    SELECT b.account_id FROM account_balances b
    JOIN ledger_account_balance_monitors m ON m.ledger_account_id = b.account_id
    WHERE m.tenant_id = $1 AND m.id = $2 AND m.discarded_at IS NULL
    FOR UPDATE OF b
), gone AS (
    UPDATE ledger_account_balance_monitors m SET discarded_at = now(), updated_at = now()
    FROM b WHERE m.id = $2 AND m.discarded_at IS NULL
    RETURNING m.ledger_account_id
)
UPDATE account_balances SET monitored = EXISTS (
    SELECT 1 FROM ledger_account_balance_monitors o
    WHERE o.ledger_account_id = account_balances.account_id AND o.discarded_at IS NULL AND o.id <> $2)
FROM gone WHERE account_balances.account_id = gone.ledger_account_id
RETURNING account_id
