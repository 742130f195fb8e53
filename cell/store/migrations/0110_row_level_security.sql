-- Row-level security as defence in depth: a query of the API path that forgets its tenant condition reads and
-- writes nothing of another tenant. Every table with a tenant_id column (but the two below) is ENABLE + FORCE
-- ROW LEVEL SECURITY with three permissive policies:
--   tenant_isolation TO ledger_app: tenant_id = current_setting('ledger.tenant') (reads and writes). The API's
--     pool sets it on each connection for the tenant of the request it serves (cell/store/db.py: create_pool's
--     setup, from the acting tenant of cell.api.auth); unset or '' sees nothing at all.
--   cross_tenant TO ledger_worker: everything. Workers are cross-tenant by design (batched apply over many
--     tenants' accounts, sweeper, events sequencer, sealer, bulk, webhooks), and so are the API process's own
--     background tasks (its second pool). ledger_worker is a member of ledger_app: the same grants and revokes
--     (insert-only entries, versions, statements, audit links), now and in every later migration.
--   owner_all TO the owner (who runs the migrations, and in production the mover and ledgerctl): FORCE makes
--     RLS apply to the owner too, so the owner says it sees everything. A superuser (make run, the tests)
--     bypasses RLS anyway.
-- Left out, with reason: tenants (no tenant_id: its id IS the tenant) and api_keys (a key is looked up by its
-- hash BEFORE the tenant is known; it holds no ledger data, only hashes); effective_balance_buckets (no
-- tenant_id: reached only through an account of the tenant, a policy through account_balances would cost a
-- lookup per row on the hot path); audit_links (the sealer writes it with COPY, which PostgreSQL refuses on a
-- table under row-level security; the API path never reads or writes it, and it holds hashes, not ledger data).
-- (The mover's COPY goes into its own staging tables, then INSERT ... SELECT as the owner: unaffected.)
-- A later table with tenant_id needs the same three policies: tests/integration/store/test_rls.py fails on any
-- table that lacks them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_worker') THEN
        CREATE ROLE ledger_worker NOLOGIN IN ROLE ledger_app;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created concurrently by another database's migration (roles are cluster-wide, see 0003)
END $$;

DO $$
DECLARE
    t text;
BEGIN
    FOR t IN
        SELECT c.table_name FROM information_schema.columns c
        JOIN information_schema.tables tb ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
        WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id' AND tb.table_type = 'BASE TABLE'
          AND c.table_name NOT IN ('api_keys', 'audit_links')
        ORDER BY c.table_name
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I TO ledger_app '
                       'USING (tenant_id = current_setting(''ledger.tenant'', true)) '
                       'WITH CHECK (tenant_id = current_setting(''ledger.tenant'', true))', t);
        EXECUTE format('CREATE POLICY cross_tenant ON %I TO ledger_worker USING (true) WITH CHECK (true)', t);
        EXECUTE format('CREATE POLICY owner_all ON %I TO %I USING (true) WITH CHECK (true)', t, current_user);
    END LOOP;
END $$;
