-- name: worker_apply
-- One group of accounts in one transaction: fold their unapplied effects; report skipped accounts and lags.
SELECT applied, skipped, lags_ms FROM ledger_apply_report($1::uuid[], $2::boolean)

-- name: worker_thaw_expired_freezes
-- The tenants whose move's freeze is past its lease (a mover that died in it), made active (ledger_thaw): those no write
-- comes for are not left frozen either, their queued effects unapplied.
SELECT t.id FROM tenants t WHERE t.state = 'frozen' AND t.frozen_until <= clock_timestamp() AND ledger_thaw(t.id)

-- name: worker_stale_accounts
-- Accounts with an effect unapplied for longer than $1 seconds (the sweeper's work), oldest first; but those of a
-- tenant not active (frozen for a move, or moved out: ledger_apply_report leaves them alone, the target applies its
-- copy), which would otherwise come first in every run, never applied, and crowd the others out past $2.
SELECT account_id FROM (
    SELECT account_id, min(created_at) AS oldest FROM balance_effects
    WHERE applied_at IS NULL AND created_at < clock_timestamp() - make_interval(secs => $1::double precision)
      AND tenant_id <> ALL(ARRAY(SELECT id FROM tenants WHERE state <> 'active'))
    GROUP BY account_id
) s ORDER BY oldest LIMIT $2

-- name: worker_lock_timeout
-- The sweeper waits for locks (it must make progress) but never forever.
SELECT set_config('lock_timeout', $1::text, true)

-- name: worker_queue_gauges
-- The async queue: unapplied effects and the age of the oldest, in seconds (0 when empty). A moved-out or arriving
-- tenant's are not in it (routines/unserved_tenants.sql): the copy it left here (until purged) is applied by no one,
-- its target cell applies its own; a move's copy being made here is applied once the move unfreezes it (0225).
SELECT count(*) AS unapplied_effects,
       coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::double precision AS oldest_unapplied_age_s
FROM balance_effects WHERE applied_at IS NULL
  AND tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants())

-- name: worker_unapplied_older_than
-- Effects unapplied for longer than $1 seconds: each one is a violation of the sweeper's bound.
SELECT count(*) FROM balance_effects
WHERE applied_at IS NULL AND created_at < clock_timestamp() - make_interval(secs => $1::double precision)

-- name: worker_statement_timeout
-- Session-wide (false): the verifier lifts the statement bound for its own run and restores it after.
SELECT set_config('statement_timeout', $1::text, false)
