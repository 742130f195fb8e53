-- Ledger account settlements (Modern Treasury's ledger_account_settlement): a ledger transaction between the
-- settled account and a contra account that offsets the net of the settled account's posted entries it gathers
-- (or, while drafting, of the entries attached to it by hand).
CREATE TABLE ledger_account_settlements (
    seq                         bigint GENERATED ALWAYS AS IDENTITY,
    id                          uuid PRIMARY KEY,
    tenant_id                   text NOT NULL,
    ledger_id                   uuid NOT NULL,
    settled_ledger_account_id   uuid NOT NULL,
    contra_ledger_account_id    uuid NOT NULL,
    currency                    text NOT NULL,
    currency_exponent           smallint NOT NULL,
    status                      text NOT NULL CHECK (status IN ('drafting', 'pending', 'posted', 'archived')),
    allow_either_direction      boolean NOT NULL,
    effective_at_upper_bound    timestamptz NOT NULL,
    -- The net of the settled entries and the direction of the settlement's entry on the settled account (null
    -- while drafting entries whose net it may not settle, and with an amount of 0).
    amount                      bigint CHECK (amount >= 0),
    settlement_entry_direction  text CHECK (settlement_entry_direction IN ('credit', 'debit')),
    ledger_transaction_id       uuid,
    description                 text,
    metadata                    jsonb NOT NULL DEFAULT '{}',
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CHECK (settled_ledger_account_id <> contra_ledger_account_id)
);
CREATE INDEX ledger_account_settlements_tenant_seq ON ledger_account_settlements (tenant_id, seq);
CREATE INDEX ledger_account_settlements_settled ON ledger_account_settlements (tenant_id, settled_ledger_account_id);
CREATE INDEX ledger_account_settlements_transaction ON ledger_account_settlements (ledger_transaction_id)
    WHERE ledger_transaction_id IS NOT NULL;

-- Which settlement holds an entry: one row per entry ever settled, so an entry is never in two settlements at
-- once (the primary key; claims are INSERT ... ON CONFLICT (entry_id) DO UPDATE ... WHERE settlement_id IS NULL).
-- Removing an entry from a draft, or archiving its settlement, releases it (settlement_id NULL): rows are never
-- deleted, which a tenant move's catch-up would not carry. role 'offset' marks the settlement transaction's own
-- entry on the settled account: never released, never settled.
CREATE TABLE ledger_account_settlement_entries (
    entry_id       uuid PRIMARY KEY REFERENCES ledger_entries (id),
    tenant_id      text NOT NULL,
    settlement_id  uuid REFERENCES ledger_account_settlements (id),
    role           text NOT NULL CHECK (role IN ('settled', 'offset')),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (role = 'settled' OR settlement_id IS NOT NULL)
);
CREATE INDEX ledger_account_settlement_entries_settlement ON ledger_account_settlement_entries (settlement_id)
    WHERE settlement_id IS NOT NULL;
CREATE INDEX ledger_account_settlement_entries_tenant ON ledger_account_settlement_entries (tenant_id);
