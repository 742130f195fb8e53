-- The transaction versions a statement lists (GET /api/ledger_transaction_versions?ledger_account_statement_id=) are
-- those committed when it was created: its insert's snapshot (taken after its account's queued effects were folded
-- in, under the account's balance row lock) and that moment's clock. A version is the statement's when its writer is
-- visible in that snapshot and it began before that moment (a version written in another cell after a tenant move
-- is later, whatever its transaction id). By its start time alone (created_at), a version whose transaction began
-- before the statement and committed after it was listed once it committed, and one that began after it but
-- committed before the fold (a posting the statement counts) was not. NULL in statements made before this: those keep
-- the start-time rule. Nullable, no default: adding them rewrites nothing (a moment's exclusive lock, bounded).
SET lock_timeout = '10s';
ALTER TABLE ledger_account_statements
    ADD COLUMN IF NOT EXISTS versions_snapshot pg_snapshot,
    ADD COLUMN IF NOT EXISTS versions_at timestamptz;
RESET lock_timeout;
