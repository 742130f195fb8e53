-- The role the cell's API and workers run as (SET ROLE on each pooled connection, or the login role in
-- production): everything it needs, and on entries and transaction versions nothing but SELECT and INSERT.
-- Together with the triggers of 0001, insert-only holds even against a bug in our own code.
-- Roles are cluster-wide while the migration lock is per database: cells whose databases share one server
-- (make run, the test session) may create the role at the same moment, and the loser sees the winner's row.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        CREATE ROLE ledger_app NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created concurrently by another database's migration: the role exists, which is all we need
END $$;

GRANT USAGE ON SCHEMA public TO ledger_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ledger_app;
REVOKE UPDATE, DELETE, TRUNCATE ON ledger_entries, ledger_transaction_versions FROM ledger_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ledger_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO ledger_app;
-- Tables and functions of later migrations (run by the same owner) get the same grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ledger_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO ledger_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO ledger_app;
