-- An entry's metadata as PATCH /api/ledger_entries/{id} last set it. ledger_entries stays insert-only (its
-- trigger forbids every UPDATE and DELETE, amounts and accounts included): the metadata an entry was created
-- with stays in ledger_entries.metadata, and a later edit is one row here, upserted, that reads take instead.
-- Nothing about money lives in this table.
CREATE TABLE ledger_entry_metadata (
    entry_id   uuid PRIMARY KEY REFERENCES ledger_entries (id),
    tenant_id  text NOT NULL,
    metadata   jsonb NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX ledger_entry_metadata_tenant ON ledger_entry_metadata (tenant_id);
