-- The events outbox (Modern Treasury's events): one row per state change of a ledger object, inserted by the
-- transaction that makes the change (so an event commits and rolls back with it), through ledger_event.
-- Commit order without a hot row or a lock every posting takes: a row carries its writing transaction's id
-- (txid, xid8). Transaction ids are handed out at start, not at commit, so a reader never serves a row at or
-- above the horizon (pg_snapshot_xmin of its snapshot: the oldest transaction still running); below it every
-- writer has ended, nothing can commit "behind" a served row, and (txid, seq) is a total order fixed for good.
-- `position` is that order made per tenant and durable (transaction ids are per database: a moved tenant's
-- rows keep their positions, and the target numbers new ones after them): assigned in batches, below the
-- horizon, by one sequencer, never by a posting. Cursors are positions.
CREATE TABLE events (
    seq         bigint GENERATED ALWAYS AS IDENTITY,
    id          uuid PRIMARY KEY,
    tenant_id   text NOT NULL,
    txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    position    bigint,
    resource    text NOT NULL,
    event_name  text NOT NULL,
    entity_id   uuid NOT NULL,
    data        jsonb NOT NULL,
    event_time  timestamptz NOT NULL DEFAULT now()
);
-- The sequencer's work list (small: only rows not yet given a position) and the readers' order.
CREATE INDEX events_unpositioned ON events (txid, seq) WHERE position IS NULL;
CREATE UNIQUE INDEX events_tenant_position ON events (tenant_id, position);
CREATE INDEX events_tenant_entity ON events (tenant_id, entity_id, position);
