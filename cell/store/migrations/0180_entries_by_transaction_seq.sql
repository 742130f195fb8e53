-- migrate: no transaction
-- A transaction's entries in the order they were written, read by one index whatever the planner's statistics:
-- (transaction_id, seq) in place of (transaction_id). With the old index, reading a transaction's entries in seq order
-- (GET of a transaction, a page of transactions, ledger_entries?ledger_transaction_id=) cost its lookup plus a sort,
-- against a walk of the tenant's entries in seq order (ledger_entries_tenant_seq) that looked as cheap on a table
-- analyzed while tiny, and a generic plan made then (kept per connection until the next analyze) read every entry of
-- the tenant (~900-4,300 buffers at 20,000 more postings; tests/integration/store/test_request_reads.py). Now the
-- lookup is ordered too and the index-only plans of the API's sessions (cell/store/db.INDEX_PLANS) take it whatever
-- the statistics. Same entries per posting, 8 bytes wider. Built on a live cell
-- (cell/store/migrate.py NO_TRANSACTION): the new index built CONCURRENTLY before the old one is dropped.
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_entries_transaction_seq ON ledger_entries (transaction_id, seq);
DROP INDEX CONCURRENTLY IF EXISTS ledger_entries_transaction;
