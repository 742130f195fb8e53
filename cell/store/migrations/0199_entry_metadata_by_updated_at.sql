-- migrate: no transaction
-- Entries' metadata set by when it was set (ledger_entry_metadata, written by a PATCH of an entry only: no posting
-- writes an entry in this index): a list of the entries changed since a time finds those whose metadata was set since
-- it here, and the rest among the entries of the transactions changed since it (0197; store.changes.entries), where
-- it walked every entry of the tenant (~41,000 buffers at 20,000 postings). It replaces the index of tenant_id alone,
-- its prefix. Built on a live cell (cell/store/migrate.py NO_TRANSACTION).
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_entry_metadata_tenant_updated
    ON ledger_entry_metadata (tenant_id, updated_at);
DROP INDEX CONCURRENTLY IF EXISTS ledger_entry_metadata_tenant;
