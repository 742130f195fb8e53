-- migrate: no transaction
-- A tenant's failed webhook deliveries in seq order (GET /api/webhook_deliveries?status=failed), read by an index of
-- the failed ones alone: without it a page walked every delivery of the tenant to find the few that failed (~550
-- buffers at 20,000 delivered; tests/integration/store/test_list_reads.py). Deliveries that succeed or are pending
-- have no entry in it. Built on a live cell (cell/store/migrate.py NO_TRANSACTION).
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_failed ON webhook_deliveries (tenant_id, seq)
    WHERE status = 'failed';
