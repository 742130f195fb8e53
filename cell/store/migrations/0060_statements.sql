-- Ledger account statements (Modern Treasury's ledger_account_statement): an account's balances at the start
-- and the end of an effective-time range [lower, upper), frozen when the statement is created together with the
-- account's lock version then. Immutable (insert-only, the trigger of 0001): the entries it lists are those
-- effective in the range whose balance effect had been applied at that lock version (routines/statement_entries.sql),
-- so a later backdated entry changes neither its balances nor its entries. The stored sums are the four running
-- sums; the amounts are computed from them by ledger_balances on every read (the formulas' one home).
CREATE TABLE ledger_account_statements (
    seq                          bigint GENERATED ALWAYS AS IDENTITY,
    id                           uuid PRIMARY KEY,
    tenant_id                    text NOT NULL,
    ledger_id                    uuid NOT NULL,
    ledger_account_id            uuid NOT NULL,
    description                  text,
    metadata                     jsonb NOT NULL DEFAULT '{}',
    effective_at_lower_bound     timestamptz NOT NULL,
    effective_at_upper_bound     timestamptz NOT NULL,
    ledger_account_lock_version  bigint NOT NULL,
    starting_pending_debits      numeric(39, 0) NOT NULL,
    starting_pending_credits     numeric(39, 0) NOT NULL,
    starting_posted_debits       numeric(39, 0) NOT NULL,
    starting_posted_credits      numeric(39, 0) NOT NULL,
    ending_pending_debits        numeric(39, 0) NOT NULL,
    ending_pending_credits       numeric(39, 0) NOT NULL,
    ending_posted_debits         numeric(39, 0) NOT NULL,
    ending_posted_credits        numeric(39, 0) NOT NULL,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    CHECK (effective_at_lower_bound <= effective_at_upper_bound)
);
CREATE INDEX ledger_account_statements_tenant_seq ON ledger_account_statements (tenant_id, seq);
CREATE INDEX ledger_account_statements_account ON ledger_account_statements (ledger_account_id);

CREATE TRIGGER ledger_account_statements_insert_only BEFORE UPDATE OR DELETE ON ledger_account_statements
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER ledger_account_statements_no_truncate BEFORE TRUNCATE ON ledger_account_statements
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change();
REVOKE UPDATE, DELETE, TRUNCATE ON ledger_account_statements FROM ledger_app;
