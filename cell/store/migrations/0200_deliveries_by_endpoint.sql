-- migrate: no transaction
-- An endpoint's webhook deliveries in seq order (GET /api/webhook_deliveries?webhook_endpoint_id=..., a page per
-- call), read by an index of that order: a plan made while the table was small walked the tenant's deliveries for
-- the endpoint's (627 more buffers at 20,000 deliveries of another endpoint), one made later sorted all of the
-- endpoint's (webhook_deliveries_entity holds them by entity). Each delivery writes one more index entry (the
-- worker's fan-out; a posting writes none). Built on a live cell (cell/store/migrate.py NO_TRANSACTION).
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, seq);
