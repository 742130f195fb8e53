-- Audit anchors: each tenant's audit-chain head (seal_seq, hash) as the cells' workers published it, outside
-- the cell (cell/store/audit.py, control_plane/anchors.py). Write-once: a row is never updated or deleted, and
-- a second head published for the same position keeps the first (what `ledgerctl audit verify` compares).
-- Keyed by tenant, not by cell: a tenant's anchors stay valid when it moves (its chain moves with it).
CREATE TABLE audit_anchors (
    tenant_id     text NOT NULL,
    seal_seq      bigint NOT NULL CHECK (seal_seq > 0),
    hash          bytea NOT NULL,
    cell          text NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seal_seq)
);

CREATE FUNCTION audit_anchors_write_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_anchors is write-once' USING ERRCODE = 'LG009';
END $$;
CREATE TRIGGER audit_anchors_write_once BEFORE UPDATE OR DELETE ON audit_anchors
    FOR EACH ROW EXECUTE FUNCTION audit_anchors_write_once();
CREATE TRIGGER audit_anchors_no_truncate BEFORE TRUNCATE ON audit_anchors
    FOR EACH STATEMENT EXECUTE FUNCTION audit_anchors_write_once();
