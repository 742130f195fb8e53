-- name: insert_events
SELECT ledger_events($1, $2, now(), NULL)

-- name: fetch_event
SELECT id, resource, event_name, entity_id, data, facts, event_time, position FROM events
WHERE tenant_id = $1 AND id = $2 AND position IS NOT NULL

-- name: sequence_events
-- Notifies ledger_events_positioned when it positioned any (the webhook deliverers listen: worker/webhooks.py).
WITH sequenced AS MATERIALIZED (SELECT ledger_sequence_events($1) AS positioned)
SELECT s.positioned FROM sequenced s
LEFT JOIN LATERAL (SELECT pg_notify('ledger_events_positioned', '') WHERE s.positioned > 0) notified ON true

-- name: sequence_tenant_events
SELECT ledger_sequence_tenant_events($1)
