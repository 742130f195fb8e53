-- The tenants whose rows this cell holds but does not serve (cell/service/tenants.py NOT_SERVED answers them 421):
-- a moved-out tenant's leftover copy, kept until `ledgerctl moves purge` deletes it in batches, and a move's copy being
-- made ('arriving', migration 0225), until the flip. Both are inconsistent by nature between a purge's batches or a
-- move's rounds, applied by no one here, and the move's to verify: the cell-wide checks (verify.sql, audit.sql's
-- audit_tenants) and the queue's gauges (worker.sql) leave them out; a check that names a tenant does not. A state
-- added later is served (checked) unless named here. One SELECT, STABLE: the planner inlines it, read in the caller's
-- snapshot. Callers write `tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants())`: one hashed probe a row, where
-- `<> ALL(ARRAY(...))` compares each row with every id (moved-out rows stay after a purge: they pile up over the years;
-- 300 of them made a cell-wide scan 50 times slower).
CREATE OR REPLACE FUNCTION ledger_unserved_tenants() RETURNS SETOF text LANGUAGE sql STABLE AS $$
    SELECT id FROM tenants WHERE state IN ('moved_out', 'arriving')
$$;
