-- migrate: no transaction
-- The audit sealer's batch of unsealed versions (cell/store/sql/audit.sql audit_unsealed_versions: a range of
-- audit_txid in (audit_txid, seq) order, a batch at a time) read in the index's order, stopping at the batch: on
-- (audit_txid) alone a plan made for the few rows the statistics said the range held read, probed and sorted on disk
-- every unsealed version behind the batch at each pass (a hot-account stack 86,000 versions behind: 0.6 s a pass for
-- its 5,000, a third of a core, the backlog growing). The same one index entry per version, 8 bytes wider; its other
-- readers (the horizon's and the unsealed tail's ranges) take its first column. Built on a live cell
-- (cell/store/migrate.py NO_TRANSACTION).
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_transaction_versions_audit_order
    ON ledger_transaction_versions (audit_txid, seq);
DROP INDEX CONCURRENTLY IF EXISTS ledger_transaction_versions_audit_txid;
