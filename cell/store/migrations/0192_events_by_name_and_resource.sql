-- migrate: no transaction
-- Events of a name or a resource (GET /api/events?event_name= or ?resource=) in position order, by an index each:
-- a page walked the tenant's whole stream for them (~520 buffers at 20,000 postings' events; a consumer polling for
-- balance monitor triggers read every posting's event, each poll). A transaction's events, every posting's, are left
-- out (they are most of the stream, and where they are asked for a walk finds them at once): neither index costs a
-- posting anything, and the sequencer one entry in each for the other events. cell/store/events.list_page states
-- the indexes' condition (resource <> 'ledger_transaction') so that a plan may take them. Built on a live cell
-- (cell/store/migrate.py NO_TRANSACTION).
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_tenant_name ON events (tenant_id, event_name, position)
    WHERE position IS NOT NULL AND resource <> 'ledger_transaction';
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_tenant_resource ON events (tenant_id, resource, position)
    WHERE position IS NOT NULL AND resource <> 'ledger_transaction';
