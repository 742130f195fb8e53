-- migrate: no transaction
-- An account a drafting settlement names as its contra account is not deleted (sql/accounts.sql account_in_use): the
-- drafts naming one found by index (the settled account's are, by ledger_account_settlements_settled). Built on a live
-- cell CONCURRENTLY (cell/store/migrate.py NO_TRANSACTION).
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_account_settlements_contra_drafting
    ON ledger_account_settlements (tenant_id, contra_ledger_account_id) WHERE status = 'drafting';
