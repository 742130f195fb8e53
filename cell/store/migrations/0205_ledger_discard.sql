-- A ledger deleted through the API (Modern Treasury's DELETE /api/ledgers/{id}) is discarded, not removed:
-- `discarded_at` is set, and from then on it is not found (reads, lists, new accounts and categories in it). Only a
-- ledger without accounts or categories (but discarded ones) can be discarded (cell/service/ledgers.py): it holds
-- no entry. Nullable, so adding it rewrites nothing.
ALTER TABLE ledgers ADD COLUMN IF NOT EXISTS discarded_at timestamptz;
