-- Bulk requests (Modern Treasury's): a batch of create or update requests of ledger transactions or accounts,
-- taken by the API (pending), processed by the cell's workers (processing), done when every resource has its
-- result (completed). `resources` holds the items as sent until then. `lease_token` / `lease_until` are the
-- processing claim: a worker that dies mid-request leaves it to another once the lease is over (a new token);
-- each transaction that writes results holds the request row FOR SHARE with its token checked (the chunks of
-- one worker write in parallel, a claim waits for them); nothing is processed twice, since a resource's result
-- row is written in the same database transaction as its effect. The counts are kept when it completes (until
-- then the reads count the results).
CREATE TABLE bulk_requests (
    seq                   bigint GENERATED ALWAYS AS IDENTITY,
    id                    uuid PRIMARY KEY,
    tenant_id             text NOT NULL,
    action_type           text NOT NULL CHECK (action_type IN ('create', 'update')),
    resource_type         text NOT NULL CHECK (resource_type IN ('ledger_transaction', 'ledger_account')),
    status                text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processing', 'completed')),
    metadata              jsonb NOT NULL DEFAULT '{}',
    resources             jsonb NOT NULL,
    total_resource_count  integer NOT NULL,
    success_result_count  integer NOT NULL DEFAULT 0,
    failed_result_count   integer NOT NULL DEFAULT 0,
    lease_token           uuid,
    lease_until           timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bulk_requests_tenant ON bulk_requests (tenant_id, seq);
CREATE INDEX bulk_requests_open ON bulk_requests (seq) WHERE status <> 'completed';

-- One result per resource (request_id, resource_index): the entity made or changed, or a bulk_error.
CREATE TABLE bulk_results (
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    id              uuid PRIMARY KEY,
    tenant_id       text NOT NULL,
    request_id      uuid NOT NULL REFERENCES bulk_requests (id) ON DELETE CASCADE,
    resource_index  integer NOT NULL,
    entity_type     text NOT NULL,
    entity_id       uuid NOT NULL,
    entity          jsonb NOT NULL,
    status          text NOT NULL CHECK (status IN ('successful', 'failed')),
    request_params  jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (request_id, resource_index)
);
CREATE INDEX bulk_results_tenant ON bulk_results (tenant_id, seq);
CREATE INDEX bulk_results_request ON bulk_results (request_id, seq);
