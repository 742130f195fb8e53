-- migrate: no transaction
-- A ledger's categories in seq order (GET /api/ledger_account_categories?ledger_id=) by one index, as a ledger's
-- accounts (ledger_accounts_ledger) and transactions are: without it a page walked the tenant's categories of every
-- ledger (~110 buffers at 5,000 categories of another ledger; tests/integration/store/test_list_reads.py). Categories
-- are written rarely. Built on a live cell (cell/store/migrate.py NO_TRANSACTION).
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_account_categories_ledger ON ledger_account_categories
    (tenant_id, ledger_id, seq);
