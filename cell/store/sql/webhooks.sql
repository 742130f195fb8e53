-- name: insert_webhook_endpoint
-- The watermark starts at the tenant's last positioned event: an endpoint gets the events after it was made.
INSERT INTO webhook_endpoints (id, tenant_id, url, event_names, description, metadata, key, after_position)
VALUES ($1, $2, $3, $4, $5, $6, $7,
        coalesce((SELECT max(position) FROM events WHERE tenant_id = $2), 0))
RETURNING *;

-- name: lock_webhook_endpoints
-- A tenant's registrations one after another, each to the end of its transaction: the next counts what the one
-- before made (webhook_endpoints_max). A statement of its own: a count in it would read a snapshot from before the
-- wait.
SELECT pg_advisory_xact_lock(hashtextextended('webhook_endpoints:' || $1, 0));

-- name: count_webhook_endpoints
SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1;

-- name: fetch_webhook_endpoint
SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2;

-- name: list_webhook_endpoints
SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3;

-- name: update_webhook_endpoint
UPDATE webhook_endpoints SET url = coalesce($3, url), event_names = coalesce($4, event_names),
       description = CASE WHEN $5 THEN $6 ELSE description END, metadata = coalesce($7, metadata),
       active = coalesce($8, active), updated_at = now()
WHERE tenant_id = $1 AND id = $2
RETURNING *;

-- name: rotate_webhook_key
UPDATE webhook_endpoints SET key = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING *;

-- name: delete_webhook_endpoint
DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 RETURNING id;

-- name: lock_webhook_deliveries
-- An endpoint's tenant's fan-outs one after another, each to the end of its transaction: a delivery's seq is drawn at
-- insert, before commit, and GET /api/webhook_deliveries pages by it; made so, a fan-out that committed after another
-- one's higher seqs were listed was behind a client's cursor, never shown (tests/integration/store/test_delivery_pages.py).
-- Serialised, seq order is commit order. A statement of its own, before the fan-out: its snapshot is taken after the
-- wait.
SELECT pg_advisory_xact_lock(hashtextextended('webhook_deliveries:' || tenant_id, 0)) FROM webhook_endpoints
WHERE id = $1;

-- name: webhook_fan_out
-- One endpoint's next events (positioned ones after its watermark, at most $2): a delivery for each it wants,
-- and the watermark moved past all of them. The endpoint row is locked (SKIP LOCKED: another worker fanning it
-- out now is left to it). Returns the deliveries made. Nothing while its tenant is not active (ledger_tenant_open).
WITH endpoint AS (
    SELECT id, tenant_id, event_names, after_position FROM webhook_endpoints
    WHERE id = $1 AND active AND ledger_tenant_open(tenant_id) FOR UPDATE SKIP LOCKED
), batch AS (
    SELECT e.id, e.position, e.entity_id, e.event_name, ep.id AS endpoint_id, ep.tenant_id, ep.event_names
    FROM endpoint ep JOIN LATERAL (
        SELECT id, position, entity_id, event_name FROM events
        WHERE tenant_id = ep.tenant_id AND position > ep.after_position ORDER BY position LIMIT $2) e ON true
), made AS (
    INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event_position, entity_id, event_name,
                                    give_up_at)
    SELECT ledger_new_id(), b.tenant_id, b.endpoint_id, b.id, b.position, b.entity_id, b.event_name,
           now() + make_interval(secs => $3)
    FROM batch b WHERE cardinality(b.event_names) = 0 OR b.event_name = ANY (b.event_names)
    ON CONFLICT (endpoint_id, event_id) DO NOTHING
    RETURNING 1
), moved AS (
    UPDATE webhook_endpoints w SET after_position = (SELECT max(position) FROM batch)
    WHERE w.id = $1 AND EXISTS (SELECT 1 FROM batch)
    RETURNING 1
)
SELECT (SELECT count(*) FROM made) AS made, (SELECT count(*) FROM batch) AS considered;

-- name: webhook_endpoints_behind
-- Active endpoints with positioned events after their watermark. Each test stays a subplan, run per endpoint with
-- its tenant and watermark as index conditions: made a join on tables analyzed while empty, the plan walked a whole
-- events index per endpoint (tests/integration/store/test_webhook_reads.py). The first event past the watermark in
-- position order: only events_tenant_position gives that order without a sort (as an EXISTS, a skip scan of
-- events_tenant_entity cost as little on empty tables and stepped through the tenant's entities).
SELECT w.id FROM webhook_endpoints w
WHERE w.active AND EXISTS (SELECT 1 FROM tenants t WHERE t.id = w.tenant_id AND t.state = 'active' OFFSET 0)
  AND (SELECT e.position FROM events e WHERE e.tenant_id = w.tenant_id AND e.position > w.after_position
       ORDER BY e.position LIMIT 1) IS NOT NULL
LIMIT $1;

-- name: claim_webhook_deliveries
-- Due deliveries, each the oldest pending one of its entity at its endpoint (event order per entity: a later
-- event waits until the earlier one succeeded or failed for good). The lease ($2 s) keeps other workers off
-- while this one attempts it; a delivery whose tenant is no longer active (ledger_tenant_open) is left as it is.
-- Every row is reached by what identifies it, whatever plan a connection made on tables analyzed while empty: the
-- subqueries stay subplans (OFFSET 0) with the delivery's columns as index conditions, the claimed rows are updated
-- by the row id the claim locked them at, and each one's endpoint and event are read by primary key in a subplan
-- (as joins, the plan walked whole indexes of deliveries and events: tests/integration/store/test_webhook_reads.py).
WITH due AS (
    SELECT d.ctid AS row_id FROM webhook_deliveries d
    WHERE d.status = 'pending' AND d.next_attempt_at <= now()
      -- Deliveries it would never take (endpoint paused, tenant moved out) are held past this end (cell migration
      -- 0228), as are those waiting behind an earlier pending one of their entity (0229), not stepped over at every
      -- claim; the checks below stay for those a race left due.
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p
                      WHERE p.endpoint_id = d.endpoint_id AND p.entity_id = d.entity_id AND p.status = 'pending'
                        AND p.event_position < d.event_position OFFSET 0)
      AND EXISTS (SELECT 1 FROM webhook_endpoints a WHERE a.id = d.endpoint_id AND a.active OFFSET 0)
      AND EXISTS (SELECT 1 FROM tenants t WHERE t.id = d.tenant_id AND t.state = 'active' OFFSET 0)
    ORDER BY d.next_attempt_at LIMIT $1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $2)
    FROM due WHERE d.ctid = due.row_id AND ledger_tenant_open(d.tenant_id)
    RETURNING d.id, d.attempts, d.endpoint_id, d.event_id
)
SELECT c.id AS delivery_id, c.attempts, w.url, w.key, e.id, e.resource, e.event_name, e.event_time, e.entity_id,
       e.data, e.facts
FROM claimed c
JOIN LATERAL (SELECT a.url, a.key FROM webhook_endpoints a WHERE a.id = c.endpoint_id OFFSET 0) w ON true
JOIN LATERAL (SELECT v.id, v.resource, v.event_name, v.event_time, v.entity_id, v.data, v.facts FROM events v
              WHERE v.id = c.event_id OFFSET 0) e ON true;

-- name: webhook_delivered
-- An attempt's outcome is recorded only while its tenant is active (ledger_tenant_open: a move's freeze waits it out;
-- after the freeze the delivery stays pending as the move copied it, and the target attempts it again).
UPDATE webhook_deliveries SET status = 'succeeded', attempts = attempts + 1, last_attempt_at = now(),
       last_status_code = $2, last_error = NULL, updated_at = now()
WHERE id = $1 AND status = 'pending' AND ledger_tenant_open(tenant_id);

-- name: webhook_attempt_failed
-- A failed attempt: retried at now() + $4 s unless that is past the delivery's give-up time (then failed). One held
-- since it was claimed (its endpoint paused meanwhile, cell migration 0228; an earlier delivery of its entity
-- redelivered, 0230) stays held, its retry time kept for the release: made due, every claim stepped over it (never
-- attempted: the claim checks the endpoint and the entity's order) while it was held.
UPDATE webhook_deliveries SET attempts = attempts + 1, last_attempt_at = now(), last_status_code = $2,
       last_error = $3, updated_at = now(),
       status = CASE WHEN now() + make_interval(secs => $4) > give_up_at THEN 'failed' ELSE 'pending' END,
       next_attempt_at = now() + make_interval(secs => $4)
           + CASE WHEN next_attempt_at >= '5000-01-01 00:00:00+00' THEN interval '60000000 hours' ELSE interval '0' END
WHERE id = $1 AND status = 'pending' AND ledger_tenant_open(tenant_id)
RETURNING status;

-- name: fetch_webhook_delivery
SELECT endpoint_id, seq FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2;

-- name: redeliver_webhook
-- A delivery (failed, or succeeded and wanted again) pending again now, with a fresh retry window. One still pending
-- and held (its endpoint paused, its tenant moved out, an earlier pending one of its entity before it: cell migrations
-- 0228, 0229) stays held, due now once released, as webhook_attempt_failed keeps it: made due, it was listed with a
-- next attempt never made and every claim stepped over it (tests/property/test_webhook_hold_model.py). What holds one
-- made pending from failed or succeeded is the trigger's (webhook_deliveries_hold_again).
UPDATE webhook_deliveries SET status = 'pending', attempts = 0,
       next_attempt_at = now()
           + CASE WHEN status = 'pending' AND next_attempt_at >= '5000-01-01 00:00:00+00' THEN interval '60000000 hours'
                  ELSE interval '0' END,
       give_up_at = now() + make_interval(secs => $3), updated_at = now()
WHERE tenant_id = $1 AND id = $2
RETURNING *;

-- name: redeliver_failed_webhooks
UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(),
       give_up_at = now() + make_interval(secs => $3), updated_at = now()
WHERE tenant_id = $1 AND status = 'failed' AND ($2::uuid IS NULL OR endpoint_id = $2)
RETURNING id;
