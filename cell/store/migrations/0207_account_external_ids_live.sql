-- migrate: no transaction
-- A deleted (discarded, 0204) ledger account's `external_id` is free again: a customer may make the account again
-- under its own id. The unique index of 0203 covered every account; this one covers those not discarded, under the
-- same name (cell/store/errors.py answers its violation 409 external_id_taken). Built on a live cell, then swapped;
-- each statement is safe to run again (an interrupted build is dropped and made again, cell/store/migrate.py).
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ledger_accounts_external_id_live
    ON ledger_accounts (tenant_id, external_id, ledger_id) WHERE external_id IS NOT NULL AND discarded_at IS NULL;
DROP INDEX CONCURRENTLY IF EXISTS ledger_accounts_external_id;
ALTER INDEX ledger_accounts_external_id_live RENAME TO ledger_accounts_external_id;
