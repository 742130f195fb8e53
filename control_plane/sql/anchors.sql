-- name: insert_anchors
INSERT INTO audit_anchors (tenant_id, seal_seq, hash, cell)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::text[])
ON CONFLICT (tenant_id, seal_seq) DO NOTHING

-- name: list_anchors
SELECT seal_seq, hash, cell FROM audit_anchors WHERE tenant_id = $1 ORDER BY seal_seq
