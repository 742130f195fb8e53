-- Tenant moves (control_plane/moves.py) delete a tenant's rows from one cell: the source copy of a finished
-- move (`ledgerctl moves purge`) or the target's partial copy of an aborted one. Entries and transaction
-- versions stay insert-only: the trigger lets a row DELETE through only for the tenant named by the
-- transaction-local setting ledger.purge_tenant, and only while that tenant is not active in this cell
-- (moved out, or frozen as an aborted move's target). The cell's role has no DELETE on these tables at all
-- (0003): only the mover, connected as the database owner, can take this path.
CREATE OR REPLACE FUNCTION ledger_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW'
       AND OLD.tenant_id = current_setting('ledger.purge_tenant', true)
       AND (SELECT state FROM tenants WHERE id = OLD.tenant_id) IS DISTINCT FROM 'active' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is insert-only', TG_TABLE_NAME USING ERRCODE = 'LG009';
END $$;
