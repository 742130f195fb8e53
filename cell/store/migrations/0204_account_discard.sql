-- A ledger account deleted through the API (Modern Treasury's DELETE /api/ledger_accounts/{id}) is discarded, not
-- removed: `discarded_at` is set, and from then on it is not found (reads, lists, postings, categories, monitors).
-- Only an account no entry was ever written to can be discarded (cell/service/accounts.py): nothing of a balance is
-- hidden. Nullable, so adding it rewrites nothing.
ALTER TABLE ledger_accounts ADD COLUMN IF NOT EXISTS discarded_at timestamptz;
