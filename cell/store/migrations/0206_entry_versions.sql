-- A pending transaction's entries replaced (Modern Treasury's PATCH /api/ledger_transactions/{id} with
-- `ledger_entries` or `effective_at`; routines/replace_entries.sql). Entries stay insert-only: the new ones are
-- written beside the old, stamped with the transaction version that wrote them (`version`; NULL: version 1, as every
-- posting writes them), and the transaction names the version whose entries are its own (`entries_version`; NULL:
-- never replaced). An entry of an older version is discarded (deleted, in Modern Treasury's words: its pending amounts
-- undone by an archive effect, shown only with show_deleted, as archived). Nullable, so adding them rewrites nothing,
-- and a read's condition `t.entries_version IS NULL OR e.version = t.entries_version` keeps its estimates.
ALTER TABLE ledger_entries ADD COLUMN IF NOT EXISTS version integer;
ALTER TABLE ledger_transactions ADD COLUMN IF NOT EXISTS entries_version integer;
-- Their statistics now (every value NULL), not at the next autovacuum, on a cell with history: without them a read's
-- `IS NULL` is estimated at 0.5% of rows, and a list's plan may change until then. Not on a new cell's empty tables:
-- analyzed, they would read as known empty rather than never analyzed, and the plans a cell makes in its first
-- minutes are made for the latter (measured: the mix's write 1.05-1.09x the database CPU, loadtests.bench_dbtier).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_transactions) THEN
        ANALYZE ledger_transactions (entries_version);
        ANALYZE ledger_entries (version);
    END IF;
END $$;
