-- migrate: no transaction
-- Transactions by external id (GET /api/ledger_transactions?external_id=, with or without its ledger) by an index:
-- the unique one (ledger_transactions_external_id) leaves archived transactions out, so no list could take it, and a
-- lookup walked the tenant's transactions: with fresh statistics ~750 buffers at 30,000 transactions (half with an
-- external id), and on plans made while the tables were tiny 460-510 more at 20,000 more postings
-- (tests/integration/store/test_request_reads.py; 20,583 where half the new ones had an external id). 0-2 now. A
-- transaction without an external id has no entry in it. Built on a live cell (cell/store/migrate.py NO_TRANSACTION).
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_transactions_by_external_id ON ledger_transactions
    (tenant_id, external_id) WHERE external_id IS NOT NULL;
