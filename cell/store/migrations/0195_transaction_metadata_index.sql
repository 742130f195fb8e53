-- migrate: no transaction
-- Transactions by metadata (GET /api/ledger_transactions?metadata[key]=value, how a customer finds the transaction
-- of its own order), read by an index of their metadata (routine ledger_transactions_matching): without it a page
-- walked every transaction of the tenant, with any plan (~460 buffers for one match at 20,000 more postings, a page
-- per ~45 transactions; tests/integration/store/test_request_reads.py). Partial: a transaction without metadata
-- (most postings) writes no entry in it; one with metadata an entry per key and value (jsonb_path_ops, as the
-- accounts' and categories'), into the tree at once (fastupdate off: no pending list for every search to read
-- whole). Built on a live cell (cell/store/migrate.py NO_TRANSACTION).
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_transactions_metadata ON ledger_transactions
    USING gin (metadata jsonb_path_ops) WITH (fastupdate = off) WHERE metadata <> '{}'::jsonb;
