-- The control plane's catalog: cells, tenants with their route (cell + epoch) and rate limit,
-- the operator audit log, and tenant moves (a resumable state machine, filled in by the move issue).

CREATE TABLE cells (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    api_url       text NOT NULL,
    database_url  text NOT NULL,
    queue_url     text NOT NULL DEFAULT '',
    -- draining: keeps its tenants but receives no new ones; disabled: routes nothing new either.
    state         text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'disabled')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenants (
    id                 text PRIMARY KEY,
    name               text NOT NULL DEFAULT '',
    cell               text NOT NULL REFERENCES cells(name),
    state              text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'moving')),
    -- Bumped on every route change; a router never trades a newer epoch for an older one.
    epoch              bigint NOT NULL DEFAULT 1,
    -- NULL: the router's default limit applies.
    rate_limit_per_s   integer CHECK (rate_limit_per_s > 0),
    rate_burst         integer CHECK (rate_burst > 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenants_cell ON tenants (cell);

CREATE TABLE operator_audit (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    action     text NOT NULL,
    subject    text NOT NULL,
    details    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX operator_audit_subject ON operator_audit (subject, id);

CREATE TABLE moves (
    id           uuid PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants(id),
    source_cell  text NOT NULL REFERENCES cells(name),
    target_cell  text NOT NULL REFERENCES cells(name),
    step         text NOT NULL DEFAULT 'planned',
    state        text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'aborted', 'failed')),
    watermarks   jsonb NOT NULL DEFAULT '{}',
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (source_cell <> target_cell)
);
-- At most one unfinished move per tenant.
CREATE UNIQUE INDEX moves_one_running ON moves (tenant_id) WHERE state = 'running';
