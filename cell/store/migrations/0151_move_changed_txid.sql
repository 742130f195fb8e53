-- migrate: no transaction
-- The tables whose rows change with no other trace (an entry's metadata edited, a settlement's status or entries
-- drafted and released) carry the id of the transaction that last wrote them, as accounts carry audit_txid (0080):
-- a tenant move's final catch-up finds the rows changed since its last round began by index (control_plane/moves.py
-- BOUNDED), not by reading the tenant's history of them. Built on a live cell (cell/store/migrate.py NO_TRANSACTION):
-- the columns without a rewrite (rows written before keep NULL: older than any round), the indexes CONCURRENTLY.
SET lock_timeout = '10s';
CREATE OR REPLACE FUNCTION ledger_touch_txid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_txid := pg_current_xact_id();
    RETURN NEW;
END $$;
ALTER TABLE ledger_entry_metadata ADD COLUMN IF NOT EXISTS changed_txid xid8;
ALTER TABLE ledger_entry_metadata ALTER COLUMN changed_txid SET DEFAULT pg_current_xact_id();
CREATE OR REPLACE TRIGGER ledger_entry_metadata_touch BEFORE UPDATE ON ledger_entry_metadata
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION ledger_touch_txid();
ALTER TABLE ledger_account_settlements ADD COLUMN IF NOT EXISTS changed_txid xid8;
ALTER TABLE ledger_account_settlements ALTER COLUMN changed_txid SET DEFAULT pg_current_xact_id();
CREATE OR REPLACE TRIGGER ledger_account_settlements_touch BEFORE UPDATE ON ledger_account_settlements
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION ledger_touch_txid();
ALTER TABLE ledger_account_settlement_entries ADD COLUMN IF NOT EXISTS changed_txid xid8;
ALTER TABLE ledger_account_settlement_entries ALTER COLUMN changed_txid SET DEFAULT pg_current_xact_id();
CREATE OR REPLACE TRIGGER ledger_account_settlement_entries_touch BEFORE UPDATE ON ledger_account_settlement_entries
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION ledger_touch_txid();
RESET lock_timeout;
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_entry_metadata_changed ON ledger_entry_metadata (changed_txid);
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_account_settlements_changed ON ledger_account_settlements (changed_txid);
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_account_settlement_entries_changed
    ON ledger_account_settlement_entries (changed_txid);
