-- The audit chain's queries (cell/store/audit.py). Transaction ids travel as bigint (xid8 has no asyncpg
-- codec); jsonb travels as text, decoded by audit.py itself, whatever codec the connection has.

-- name: audit_lock_try
SELECT pg_try_advisory_xact_lock(7311900014)

-- name: audit_lock
SELECT pg_advisory_xact_lock(7311900014)

-- name: audit_custom_plans
-- For the rest of the sealer's transaction, every statement is planned for its parameters, each time. Its tables
-- grow from empty between two analyzes; a generic plan cached while they were small (an estimate of ~1 row)
-- probes audit_links by a scan of all its version links per unsealed version: quadratic, ~1.5 s a pass after
-- 20 s of postings on a fresh cell, most of the database's CPU. A pass plans its few statements in ~0.5 ms.
SET LOCAL plan_cache_mode = force_custom_plan

-- name: audit_read_in_order
-- For the next statement, the unsealed versions' batch: read in order from the index on (audit_txid, seq), which stops
-- at the batch, never sorted (a range the statistics take for small got a bitmap scan of the whole backlog and a sort
-- on disk, migrations/0202). Undone by audit_read_as_planned.
SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off

-- name: audit_read_as_planned
RESET enable_sort; RESET enable_bitmapscan

-- name: audit_done_txid
SELECT done_txid::text::bigint FROM audit_sealer

-- name: audit_horizon_and_done
-- A pass's bounds (routines/audit_horizon.sql).
SELECT horizon, done, written FROM ledger_audit_horizon()

-- name: audit_set_done_txid
UPDATE audit_sealer SET done_txid = $1::bigint::text::xid8

-- name: audit_unsealed_versions
-- Versions written by transactions in [$1, $2) not linked yet ($3: one tenant, or all), in commit order, with
-- what a link covers of them (audit_version_rows' columns).
-- The NOT EXISTS is one probe of audit_links_version per candidate (OFFSET 0 keeps it a subplan: planned as an
-- anti join, the custom plan hash-joined the pass's candidates to every version link, or with hash joins off
-- rescanned them all per candidate: a pass that grew with the chain, ~6 to 200 ms at 3,000 links against ~1 ms).
SELECT v.audit_txid::text::bigint AS txid, v.seq, v.tenant_id, v.transaction_id, v.version,
       v.snapshot::text AS snapshot, v.prev_hash, v.hash, v.created_at
FROM ledger_transaction_versions v
WHERE v.audit_txid >= $1::bigint::text::xid8 AND v.audit_txid < $2::bigint::text::xid8
  AND ($3::text IS NULL OR v.tenant_id = $3)
  AND NOT EXISTS (SELECT 1 FROM audit_links l
                  WHERE l.kind = 'version' AND l.ref_id = v.transaction_id AND l.ref_version = v.version OFFSET 0)
ORDER BY v.audit_txid, v.seq
LIMIT $4

-- name: audit_changed_accounts
-- Accounts written by transactions in [$1, $2) ($3: one tenant, or every active one: a frozen tenant's
-- accounts are sealed by the move that froze it, and a tenant moving in has its links from its source).
SELECT a.audit_txid::text::bigint AS txid, a.seq, a.tenant_id, a.id
FROM ledger_accounts a LEFT JOIN tenants t ON t.id = a.tenant_id
WHERE a.audit_txid >= $1::bigint::text::xid8 AND a.audit_txid < $2::bigint::text::xid8
  AND CASE WHEN $3::text IS NULL THEN coalesce(t.state, 'active') = 'active' ELSE a.tenant_id = $3 END

-- name: audit_version_rows
-- The covered content of versions ($1 transaction ids, $2 versions, pairwise).
SELECT v.tenant_id, v.transaction_id, v.version, v.snapshot::text AS snapshot, v.prev_hash, v.hash, v.created_at
FROM unnest($1::uuid[], $2::int[]) AS k(transaction_id, version)
JOIN ledger_transaction_versions v ON v.transaction_id = k.transaction_id AND v.version = k.version

-- name: audit_entry_rows
-- The entries each version wrote ($1 transaction ids, $2 versions, pairwise): version 1's, and a replacement's (0206).
SELECT e.transaction_id, k.version, e.id, e.tenant_id, e.ledger_account_id, e.direction, e.amount, e.effective_at,
       e.created_at, e.metadata::text AS metadata
FROM unnest($1::uuid[], $2::int[]) AS k(transaction_id, version)
JOIN ledger_entries e ON e.transaction_id = k.transaction_id AND coalesce(e.version, 1) = k.version

-- name: audit_account_rows
SELECT a.id, a.tenant_id, a.ledger_id, a.name, a.description, a.normal_balance, a.currency,
       a.currency_exponent, a.metadata::text AS metadata, a.sync_only, a.external_id, a.ledgerable_type,
       a.ledgerable_id, a.discarded_at, a.created_at, a.updated_at,
       a.audit_txid::text::bigint AS txid
FROM ledger_accounts a WHERE a.id = ANY($1::uuid[])

-- name: audit_latest_account_links
SELECT DISTINCT ON (ref_id) ref_id, content_hash FROM audit_links
WHERE kind = 'account' AND ref_id = ANY($1::uuid[])
ORDER BY ref_id, seal_seq DESC

-- name: audit_heads
-- Each tenant's chain head ($1: these tenants; NULL: every tenant of the cell).
SELECT l.tenant_id, l.seal_seq, l.hash
FROM (SELECT id FROM tenants WHERE $1::text[] IS NULL UNION SELECT unnest($1::text[])) t
CROSS JOIN LATERAL (SELECT tenant_id, seal_seq, hash FROM audit_links
                    WHERE tenant_id = t.id ORDER BY seal_seq DESC LIMIT 1) l

-- name: audit_links_page
SELECT seal_seq, kind, ref_id, ref_version, content_hash, hash, sealed_at FROM audit_links
WHERE tenant_id = $1 AND seal_seq > $2 ORDER BY seal_seq LIMIT $3

-- name: audit_link_count
SELECT count(*) FROM audit_links WHERE tenant_id = $1

-- name: audit_unlinked_versions
-- Versions below the watermark that no link covers: written behind the chain, or their link removed.
SELECT v.transaction_id, v.version FROM ledger_transaction_versions v
WHERE v.tenant_id = $1 AND v.audit_txid < $2::bigint::text::xid8
  AND NOT EXISTS (SELECT 1 FROM audit_links l
                  WHERE l.kind = 'version' AND l.ref_id = v.transaction_id AND l.ref_version = v.version)
ORDER BY v.seq LIMIT 20

-- name: audit_unlinked_entries
-- Entries whose version (the one that wrote them: the first, or a replacement's, 0206) is not sealed (absent, or no
-- link covers it), but for the unsealed tail (such a version at or above the watermark).
SELECT e.id, e.transaction_id FROM ledger_entries e
WHERE e.tenant_id = $1
  AND NOT EXISTS (SELECT 1 FROM audit_links l WHERE l.kind = 'version' AND l.ref_id = e.transaction_id
                                               AND l.ref_version = coalesce(e.version, 1))
  AND NOT EXISTS (SELECT 1 FROM ledger_transaction_versions v WHERE v.transaction_id = e.transaction_id
                     AND v.version = coalesce(e.version, 1) AND v.audit_txid >= $2::bigint::text::xid8)
ORDER BY e.seq LIMIT 20

-- name: audit_tenant_accounts
SELECT a.id, a.audit_txid::text::bigint AS txid FROM ledger_accounts a WHERE a.tenant_id = $1

-- name: audit_unsealed_count
SELECT (SELECT count(*) FROM ledger_transaction_versions v WHERE v.tenant_id = $1
          AND v.audit_txid >= $2::bigint::text::xid8)
     + (SELECT count(*) FROM ledger_accounts a WHERE a.tenant_id = $1 AND a.audit_txid >= $2::bigint::text::xid8)

-- name: audit_unsealed_age
-- The oldest covered row not sealed yet, cell-wide (the benchmark's unsealed tail), in seconds; one probe of
-- audit_links_version per version above the watermark (as audit_unsealed_versions).
SELECT coalesce(extract(epoch FROM now() - min(v.created_at)), 0)::float8 FROM ledger_transaction_versions v
WHERE v.audit_txid >= (SELECT done_txid FROM audit_sealer)
  AND NOT EXISTS (SELECT 1 FROM audit_links l
                  WHERE l.kind = 'version' AND l.ref_id = v.transaction_id AND l.ref_version = v.version OFFSET 0)

-- name: audit_tenants
-- The tenants whose history this cell holds and serves (a moved-out tenant's leftover copy is its target's to verify,
-- a copy being made here its move's: routines/unserved_tenants.sql).
SELECT id FROM tenants WHERE id NOT IN (SELECT * FROM ledger_unserved_tenants()) ORDER BY id
