-- migrate: no transaction
-- Modern Treasury's ledger account fields `external_id` (a customer's own unique id of the account, in its ledger)
-- and `ledgerable_type`/`ledgerable_id` (the object the account stands for): nullable, so adding them rewrites
-- nothing. external_id is unique in a tenant's ledger (accounts are never deleted); its index, (tenant, external id)
-- first, also serves GET /api/ledger_accounts?external_id= with or without the ledger. An account without one has
-- no entry in it. Built on a live cell (cell/store/migrate.py NO_TRANSACTION).
ALTER TABLE ledger_accounts ADD COLUMN IF NOT EXISTS external_id text,
    ADD COLUMN IF NOT EXISTS ledgerable_type text, ADD COLUMN IF NOT EXISTS ledgerable_id text;
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ledger_accounts_external_id
    ON ledger_accounts (tenant_id, external_id, ledger_id) WHERE external_id IS NOT NULL;
