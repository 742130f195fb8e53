-- migrate: no transaction
-- A page of transactions in effective-time order (order_by=effective_at: (effective_at, seq), either way) read by
-- one index: (tenant_id, effective_at, seq) in place of (tenant_id, effective_at), as ledger_entries_account_effective
-- orders an account's entries. The old index left every run of equal effective times to be sorted by seq whole, and
-- transactions often share one (a day's postings dated at midnight): a page read all of the tenant's transactions of
-- that time, with any plan (381 buffers for a page of 5 of 20,000 such transactions, 5 now;
-- tests/integration/store/test_request_reads.py). Same entries per posting, 8 bytes wider. Built on a live cell
-- (cell/store/migrate.py NO_TRANSACTION): the new index built CONCURRENTLY before the old one is dropped.
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_transactions_effective_seq ON ledger_transactions
    (tenant_id, effective_at, seq);
DROP INDEX CONCURRENTLY IF EXISTS ledger_transactions_effective;
