-- migrate: no transaction
-- Transactions by when they last changed (GET /api/ledger_transactions?updated_at[gte]=..., how a customer polls for
-- the transactions changed since its last poll), read by an index of it (store.transactions.list_page probes it, then
-- reads the few by id): without it a page walked every transaction of the tenant, with any plan (~480 buffers for one
-- at 20,000 more postings, a page per ~45 transactions: ~230,000 at 10 million; a poll each time). Every posting
-- writes an entry in it, and every change of a transaction one more (a change of status or metadata was already no
-- heap-only update: both are indexed): paired serial runs of the mix's ledger_post with and without it, 1.04, 1.12
-- and 0.97 the backend CPU. Built on a live cell (cell/store/migrate.py NO_TRANSACTION).
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_transactions_updated ON ledger_transactions (tenant_id, updated_at);
