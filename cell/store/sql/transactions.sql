-- name: post_transaction
SELECT ledger_post($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
                   $21, $22, $23, $24, $25)::text

-- name: post_transaction_in_group
SELECT ledger_post_in_group($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
                            $20, $21, $22, $23, $24, $25)::text

-- name: post_queued_group
SELECT ledger_post_queued_group($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
                                $20, $21)::text

-- name: lock_accounts
SELECT ledger_fence($1), ledger_lock($2::uuid[])

-- name: transition_transaction
SELECT ledger_transition($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)::text

-- name: replace_entries
SELECT ledger_replace_entries($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)::text

-- name: fetch_transaction
SELECT seq, id, ledger_id, description, status, effective_at, external_id, metadata, version, reverses_id,
       reversed_by_id, posted_at, archived_at, created_at, updated_at, ledgerable_type, ledgerable_id,
       archived_reason, partially_posts_id
FROM ledger_transactions WHERE tenant_id = $1 AND id = $2

-- name: fetch_transactions
SELECT seq, id, ledger_id, description, status, effective_at, external_id, metadata, version, reverses_id,
       reversed_by_id, posted_at, archived_at, created_at, updated_at, ledgerable_type, ledgerable_id,
       archived_reason, partially_posts_id
FROM ledger_transactions WHERE tenant_id = $1 AND id = ANY ($2::uuid[])

-- name: fetch_versions
SELECT v.transaction_id, v.version, v.snapshot, v.hash, v.created_at, ledger_version_entries(v.snapshot) AS entries,
       t.version AS current_version, t.posted_at, t.archived_reason, t.partially_posts_id, t.reversed_by_id
FROM ledger_transaction_versions v JOIN ledger_transactions t ON t.tenant_id = $1 AND t.id = v.transaction_id
WHERE v.tenant_id = $1 AND v.transaction_id = $2 ORDER BY v.version
