-- The cell's schema: tenants, keys, ledgers, accounts, transactions, entries, balance effects and caches.
-- Every row is tenant-scoped. Entries and transaction versions are insert-only (triggers below).
-- No foreign keys point at hot rows (account balances): each would take a share lock per posting.

CREATE TABLE tenants (
    id          text PRIMARY KEY,
    name        text NOT NULL DEFAULT '',
    state       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'frozen', 'moved_out')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants(id),
    secret_hash  bytea NOT NULL UNIQUE,
    scopes       text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE ledgers (
    seq          bigint GENERATED ALWAYS AS IDENTITY,
    id           uuid PRIMARY KEY,
    tenant_id    text NOT NULL,
    name         text NOT NULL,
    description  text,
    metadata     jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledgers_tenant_seq ON ledgers (tenant_id, seq);

CREATE TABLE ledger_accounts (
    seq                bigint GENERATED ALWAYS AS IDENTITY,
    id                 uuid PRIMARY KEY,
    tenant_id          text NOT NULL,
    ledger_id          uuid NOT NULL REFERENCES ledgers(id),
    name               text NOT NULL,
    description        text,
    normal_balance     text NOT NULL CHECK (normal_balance IN ('credit', 'debit')),
    currency           text NOT NULL,
    currency_exponent  smallint NOT NULL,
    metadata           jsonb NOT NULL DEFAULT '{}',
    sync_only          boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_accounts_tenant_seq ON ledger_accounts (tenant_id, seq);
CREATE INDEX ledger_accounts_ledger ON ledger_accounts (tenant_id, ledger_id, seq);
CREATE INDEX ledger_accounts_metadata ON ledger_accounts USING gin (metadata jsonb_path_ops);

-- Total balance cache: one row per account, created with the account so that it can always be locked.
CREATE TABLE account_balances (
    account_id       uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    pending_debits   numeric(39, 0) NOT NULL DEFAULT 0,
    pending_credits  numeric(39, 0) NOT NULL DEFAULT 0,
    posted_debits    numeric(39, 0) NOT NULL DEFAULT 0,
    posted_credits   numeric(39, 0) NOT NULL DEFAULT 0,
    lock_version     bigint NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 2000);

CREATE TABLE ledger_transactions (
    seq              bigint GENERATED ALWAYS AS IDENTITY,
    id               uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    ledger_id        uuid NOT NULL,
    description      text,
    status           text NOT NULL CHECK (status IN ('pending', 'posted', 'archived')),
    effective_at     timestamptz NOT NULL,
    external_id      text,
    metadata         jsonb NOT NULL DEFAULT '{}',
    version          integer NOT NULL DEFAULT 1,
    reverses_id      uuid,
    reversed_by_id   uuid,
    posted_at        timestamptz,
    archived_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_transactions_tenant_seq ON ledger_transactions (tenant_id, seq);
CREATE INDEX ledger_transactions_ledger ON ledger_transactions (tenant_id, ledger_id, seq);
CREATE INDEX ledger_transactions_effective ON ledger_transactions (tenant_id, effective_at);
CREATE UNIQUE INDEX ledger_transactions_external_id ON ledger_transactions (tenant_id, ledger_id, external_id)
    WHERE external_id IS NOT NULL AND status <> 'archived';

-- One immutable row per version; hash = sha256(previous version's hash || snapshot), the audit chain.
CREATE TABLE ledger_transaction_versions (
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id  uuid NOT NULL,
    version         integer NOT NULL,
    tenant_id       text NOT NULL,
    snapshot        jsonb NOT NULL,
    prev_hash       bytea,
    hash            bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (transaction_id, version)
);
CREATE INDEX ledger_transaction_versions_tenant ON ledger_transaction_versions (tenant_id, seq);

CREATE TABLE ledger_entries (
    seq                bigint GENERATED ALWAYS AS IDENTITY,
    id                 uuid PRIMARY KEY,
    tenant_id          text NOT NULL,
    transaction_id     uuid NOT NULL,
    ledger_account_id  uuid NOT NULL,
    direction          text NOT NULL CHECK (direction IN ('credit', 'debit')),
    amount             bigint NOT NULL CHECK (amount > 0),
    effective_at       timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id);
CREATE INDEX ledger_entries_account_seq ON ledger_entries (ledger_account_id, seq);
CREATE INDEX ledger_entries_account_effective ON ledger_entries (ledger_account_id, effective_at, seq);
CREATE INDEX ledger_entries_tenant_seq ON ledger_entries (tenant_id, seq);

-- Balance effects: every change to an account's balances. Unapplied rows are the async queue (the truth;
-- an SQS message only nudges). Applied rows carry the resulting balances: the resulting-balance cache.
CREATE TABLE balance_effects (
    seq               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id         text NOT NULL,
    account_id        uuid NOT NULL,
    entry_id          uuid NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('entry', 'post', 'archive')),
    d_pending_debits  bigint NOT NULL,
    d_pending_credits bigint NOT NULL,
    d_posted_debits   bigint NOT NULL,
    d_posted_credits  bigint NOT NULL,
    effective_at      timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    applied_at        timestamptz,
    lock_version      bigint,
    pending_debits    numeric(39, 0),
    pending_credits   numeric(39, 0),
    posted_debits     numeric(39, 0),
    posted_credits    numeric(39, 0),
    UNIQUE (entry_id, kind)
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.05);
-- The queue, by account (what apply reads); the sweeper reads created_at from it too.
CREATE INDEX balance_effects_unapplied ON balance_effects (account_id, seq) INCLUDE (created_at)
    WHERE applied_at IS NULL;
CREATE UNIQUE INDEX balance_effects_version ON balance_effects (account_id, lock_version);
CREATE INDEX balance_effects_account_effective ON balance_effects (account_id, effective_at)
    WHERE applied_at IS NOT NULL;

-- Effective-time cache: per account and UTC day, the deltas of every applied effect of that day.
CREATE TABLE effective_balance_buckets (
    account_id       uuid NOT NULL,
    day              date NOT NULL,
    pending_debits   numeric(39, 0) NOT NULL DEFAULT 0,
    pending_credits  numeric(39, 0) NOT NULL DEFAULT 0,
    posted_debits    numeric(39, 0) NOT NULL DEFAULT 0,
    posted_credits   numeric(39, 0) NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, day)
) WITH (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 2000);

CREATE TABLE idempotency_keys (
    tenant_id     text NOT NULL,
    key           text NOT NULL,
    request_hash  bytea NOT NULL,
    resource_type text NOT NULL,
    resource_id   uuid NOT NULL,
    status_code   smallint,
    response      bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

-- Insert-only tables: no UPDATE, no DELETE, ever. Corrections are reversals.
CREATE FUNCTION ledger_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is insert-only', TG_TABLE_NAME USING ERRCODE = 'LG009';
END $$;

CREATE TRIGGER ledger_entries_insert_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER ledger_transaction_versions_insert_only BEFORE UPDATE OR DELETE ON ledger_transaction_versions
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER ledger_transaction_versions_no_truncate BEFORE TRUNCATE ON ledger_transaction_versions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change();
