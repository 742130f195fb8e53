-- migrate: no transaction
-- Entries by metadata (GET /api/ledger_entries?metadata[key]=value), read by indexes of their metadata (routine
-- ledger_entries_matching): without them a page walked every entry of the tenant, with any plan (~40,900 buffers for
-- two matches at 20,000 more postings; tests/integration/store/test_request_reads.py). An entry's metadata is the
-- one it was written with (ledger_entries, insert-only) unless PATCH /api/ledger_entries/{id} set another since
-- (ledger_entry_metadata, 0030): an index of each. Partial on ledger_entries, as the transactions' (0195): an entry
-- without metadata (most) writes no entry in it, one with metadata an entry per key and value (jsonb_path_ops),
-- into the tree at once (fastupdate off). Built on a live cell (cell/store/migrate.py NO_TRANSACTION).
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_entries_metadata ON ledger_entries
    USING gin (metadata jsonb_path_ops) WITH (fastupdate = off) WHERE metadata <> '{}'::jsonb;
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_entry_metadata_metadata ON ledger_entry_metadata
    USING gin (metadata jsonb_path_ops) WITH (fastupdate = off) WHERE metadata <> '{}'::jsonb;
