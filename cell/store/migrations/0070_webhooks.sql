-- Webhooks: a tenant's endpoints and the delivery of its events to them (at least once, in event order per
-- entity). Delivery state lives here, never on the events outbox (0040): a posting writes nothing of it.
-- `after_position` is an endpoint's fan-out watermark: every event of its tenant at or below that position has
-- been considered (a delivery row made when its name matched). `key` is the HMAC key the deliveries are signed
-- with: kept in clear because signing needs it; the API shows it only when it is made (create, rotate).
CREATE TABLE webhook_endpoints (
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    id              uuid PRIMARY KEY,
    tenant_id       text NOT NULL,
    url             text NOT NULL,
    event_names     text[] NOT NULL DEFAULT '{}',  -- empty: every event
    description     text,
    metadata        jsonb NOT NULL DEFAULT '{}',
    active          boolean NOT NULL DEFAULT true,
    key             text NOT NULL,
    after_position  bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, seq);

-- One row per (endpoint, event): its id is the X-Webhook-ID of every attempt. `status` pending -> succeeded |
-- failed (retries exhausted; `redeliver` makes it pending again). `next_attempt_at` is also the claim's lease:
-- a worker that takes a delivery moves it past its own attempt, so a worker that dies mid-attempt leaves it
-- to be retried, never lost.
CREATE TABLE webhook_deliveries (
    seq              bigint GENERATED ALWAYS AS IDENTITY,
    id               uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id         uuid NOT NULL,
    event_position   bigint NOT NULL,
    entity_id        uuid NOT NULL,
    event_name       text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    give_up_at       timestamptz NOT NULL,
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id)
);
-- The claim's work list and its per-entity order check.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_entity ON webhook_deliveries (endpoint_id, entity_id, event_position)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, seq);
