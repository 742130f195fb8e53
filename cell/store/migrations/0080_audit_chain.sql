-- The audit chain (DESIGN.md section 9; cell/store/audit.py): one hash chain per tenant over every transaction
-- version (version 1 with its transaction's entries) and every account created or changed, in commit order.
-- Commit order without a hot row, as the events outbox does (0040_events.sql): a covered row carries its
-- writing transaction's id (`audit_txid`, a column default: the posting path writes nothing more); one sealer
-- at a time (the workers, in batches, under an advisory lock) links the rows below the horizon (the oldest
-- transaction still running: nothing can commit behind a sealed point) in (txid, kind, seq) order. Once
-- sealed, a link's position and hash never depend on a transaction id again (ids are per database): a moved
-- tenant's links move with it, and copied rows arrive with audit_txid 0, below every horizon, never sealed anew.
ALTER TABLE ledger_transaction_versions ADD COLUMN audit_txid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE ledger_accounts ADD COLUMN audit_txid xid8 NOT NULL DEFAULT pg_current_xact_id();
-- The sealer's work list: rows of the transactions that ended since its last run (a range on this index).
CREATE INDEX ledger_transaction_versions_audit_txid ON ledger_transaction_versions (audit_txid);
CREATE INDEX ledger_accounts_audit_txid ON ledger_accounts (audit_txid);

-- An account row changed (a PATCH, or any other update): its writing transaction's id again, so the sealer
-- sees it; whether what changed is covered is decided there (the account's content against its last link).
CREATE FUNCTION ledger_audit_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.audit_txid := pg_current_xact_id();
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_accounts_audit_touch BEFORE UPDATE ON ledger_accounts
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION ledger_audit_touch();

-- One link per covered row: hash = sha256(previous link's hash || the link's canonical JSON), where the link
-- names its tenant, position, kind, row and the sha-256 of the row's canonical content (cell/store/audit.py).
CREATE TABLE audit_links (
    tenant_id     text NOT NULL,
    seal_seq      bigint NOT NULL CHECK (seal_seq > 0),
    kind          text NOT NULL CHECK (kind IN ('version', 'account')),
    ref_id        uuid NOT NULL,
    ref_version   integer,
    content_hash  bytea NOT NULL,
    hash          bytea NOT NULL,
    sealed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seal_seq)
);
-- A version is linked once; an account's last link is what its current content is compared with.
CREATE UNIQUE INDEX audit_links_version ON audit_links (ref_id, ref_version) WHERE kind = 'version';
CREATE INDEX audit_links_account ON audit_links (ref_id, seal_seq) WHERE kind = 'account';
CREATE TRIGGER audit_links_insert_only BEFORE UPDATE OR DELETE ON audit_links
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER audit_links_no_truncate BEFORE TRUNCATE ON audit_links
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_links FROM ledger_app;

-- The sealer's watermark (one row per cell, nobody's data): every covered row whose audit_txid is below it is
-- sealed. Starts at 1: rows copied in by a tenant move carry 0.
CREATE TABLE audit_sealer (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    done_txid  xid8 NOT NULL
);
INSERT INTO audit_sealer (done_txid) VALUES ('1');
