-- migrate: no transaction
-- What a tenant move's final catch-up (control_plane/moves.py, BOUNDED) finds by index, inside the freeze, instead
-- of reading the tenant's history of these tables: their rows past a floor read under the fence, and the rows
-- not yet in a final state then (the only ones an update may still change).
-- Built on a live cell: each statement on its own (cell/store/migrate.py NO_TRANSACTION), the indexes CONCURRENTLY
-- (writes go on while they are built), the column without a rewrite (a default set after the column is added
-- applies to new rows only: rows written before it keep NULL, older than any floor).
SET lock_timeout = '10s';
-- Idempotency keys in the order they were claimed: a seq of their own (new rows only; NULL is older than any).
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS seq bigint;
CREATE SEQUENCE IF NOT EXISTS idempotency_keys_seq_seq OWNED BY idempotency_keys.seq;
ALTER TABLE idempotency_keys ALTER COLUMN seq SET DEFAULT nextval('idempotency_keys_seq_seq');
RESET lock_timeout;
CREATE INDEX CONCURRENTLY IF NOT EXISTS idempotency_keys_tenant_seq ON idempotency_keys (tenant_id, seq);
-- Keys whose answer is still to be stored (status_code NULL: claimed, the answer stored after the commit; a bulk
-- resource's key is claimed decided, cell/store/sql/bulk.sql): small, a few per request in flight.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idempotency_keys_unanswered ON idempotency_keys (tenant_id)
    WHERE status_code IS NULL;
-- Bulk requests not completed (a completed one never changes again), per tenant.
CREATE INDEX CONCURRENTLY IF NOT EXISTS bulk_requests_tenant_open ON bulk_requests (tenant_id)
    WHERE status <> 'completed';
-- Webhook deliveries pending (attempts still to come), per tenant.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_tenant_pending ON webhook_deliveries (tenant_id)
    WHERE status = 'pending';
