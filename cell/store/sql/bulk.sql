-- name: insert_bulk_request
-- Notifies the workers (LISTEN ledger_bulk_requests, worker/bulk.py) when the transaction commits: a waiting worker
-- claims it at once instead of at its next poll.
WITH inserted AS (
    INSERT INTO bulk_requests (id, tenant_id, action_type, resource_type, metadata, resources, total_resource_count)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    RETURNING *
), notified AS (SELECT pg_notify('ledger_bulk_requests', ''))
SELECT inserted.* FROM inserted CROSS JOIN notified;

-- name: lock_open_bulk_requests
-- Held to the end of the caller's transaction: the tenant's requests in flight have committed before it counts its
-- open ones (bulk_requests_open_max). A statement of its own: a count in it would read a snapshot from before the wait.
SELECT pg_advisory_xact_lock(hashtextextended('bulk_requests:' || $1, 0));

-- name: count_open_bulk_requests
-- bulk_requests_tenant_open (0150), up to $2.
SELECT count(*) FROM (SELECT 1 FROM bulk_requests WHERE tenant_id = $1 AND status <> 'completed' LIMIT $2) o;

-- name: fetch_bulk_request
-- An open request's counts so far are its results counted (they are kept on the row when it completes).
SELECT r.*, c.successes, c.failures FROM bulk_requests r
CROSS JOIN LATERAL (SELECT count(*) FILTER (WHERE b.status = 'successful') AS successes,
                           count(*) FILTER (WHERE b.status = 'failed') AS failures
                    FROM bulk_results b WHERE b.request_id = r.id AND r.status <> 'completed') c
WHERE r.tenant_id = $1 AND r.id = $2;

-- name: list_bulk_requests
SELECT r.*, c.successes, c.failures FROM bulk_requests r
CROSS JOIN LATERAL (SELECT count(*) FILTER (WHERE b.status = 'successful') AS successes,
                           count(*) FILTER (WHERE b.status = 'failed') AS failures
                    FROM bulk_results b WHERE b.request_id = r.id AND r.status <> 'completed') c
WHERE r.tenant_id = $1 AND r.seq > $2 AND ($3::text IS NULL OR r.status = $3)
  AND ($4::text IS NULL OR r.action_type = $4) AND ($5::text IS NULL OR r.resource_type = $5)
  AND ($6::jsonb IS NULL OR r.metadata @> $6)
ORDER BY r.seq LIMIT $7;

-- name: claim_bulk_request
-- The oldest open request no live worker holds: processing, leased to the caller for $1 s, its attempts counted
-- (committed with the claim: a worker that dies mid-request has used one).
UPDATE bulk_requests SET status = 'processing', lease_token = gen_random_uuid(), attempts = attempts + 1,
       lease_until = now() + make_interval(secs => $1), updated_at = now()
WHERE id = (SELECT id FROM bulk_requests
            WHERE status <> 'completed' AND (lease_until IS NULL OR lease_until < now())
              AND tenant_id IN (SELECT id FROM tenants WHERE state = 'active')
            ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING *;

-- name: hold_bulk_request
-- Taken by every transaction that writes results: the claim still the caller's ($2 its token).
SELECT id FROM bulk_requests WHERE id = $1 AND lease_token = $2 AND status <> 'completed' FOR SHARE;

-- name: renew_bulk_lease
UPDATE bulk_requests SET lease_until = now() + make_interval(secs => $3)
WHERE id = $1 AND lease_token = $2 AND status <> 'completed'
RETURNING id;

-- name: bulk_result_indexes
SELECT resource_index FROM bulk_results WHERE request_id = $1 AND resource_index = ANY ($2::int[]);

-- name: all_bulk_result_indexes
SELECT resource_index FROM bulk_results WHERE request_id = $1;

-- name: insert_bulk_result
INSERT INTO bulk_results (id, tenant_id, request_id, resource_index, entity_type, entity_id, entity, status,
                          request_params)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- name: complete_bulk_request
-- Completed once every resource has its result: the counts kept, the resources dropped.
UPDATE bulk_requests r SET status = 'completed', lease_token = NULL, lease_until = NULL, resources = '[]'::jsonb,
       success_result_count = c.successful, failed_result_count = c.failed, updated_at = now()
FROM (SELECT count(*) FILTER (WHERE status = 'successful') AS successful,
             count(*) FILTER (WHERE status = 'failed') AS failed
      FROM bulk_results WHERE request_id = $1) c
WHERE r.id = $1 AND r.status <> 'completed' AND c.successful + c.failed = r.total_resource_count
RETURNING r.*;

-- name: fetch_bulk_result
SELECT * FROM bulk_results WHERE tenant_id = $1 AND id = $2;

-- name: resources_of_keys
SELECT key, resource_id, request_hash FROM idempotency_keys WHERE tenant_id = $1 AND key = ANY ($2::text[]);

-- name: claim_bulk_keys
-- Bulk resources' idempotency keys, claimed together (ledger_claim_key's rows, for postings written without
-- their own claim); a key claimed already is left as it is (and not returned). Claimed decided (201, no answer
-- stored: a replay renders the resource): no answer will come, so a tenant move never waits for one
-- (0150_move_bounds.sql).
INSERT INTO idempotency_keys (tenant_id, key, request_hash, resource_type, resource_id, status_code)
SELECT $1, k.key, k.hash, 'ledger_transaction', k.resource, 201
FROM unnest($2::text[], $3::bytea[], $4::uuid[]) AS k (key, hash, resource)
ON CONFLICT (tenant_id, key) DO NOTHING
RETURNING key;

-- name: take_bulk_keys
-- The keys of a given-up request's new resources not made (cell/service/bulk.py give_up), taken for the request
-- ($3) with a hash no resource has ($4): a worker that stalled mid-attempt and posts one of them alone afterwards is
-- refused (idempotency_key_reused), never makes it. Decided (no answer will come: a tenant move never waits for one).
-- A key claimed already is left as it is: one whose posting is in flight is waited for (the caller reads it after).
INSERT INTO idempotency_keys (tenant_id, key, request_hash, resource_type, resource_id, status_code)
SELECT $1, k, $4, 'bulk_request', $3, 422 FROM unnest($2::text[]) AS k
ON CONFLICT (tenant_id, key) DO NOTHING;

-- name: transaction_time
SELECT now();
