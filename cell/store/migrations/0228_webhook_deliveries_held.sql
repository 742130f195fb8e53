-- migrate: no transaction
-- A pending webhook delivery the claim will never take as things stand is *held*: its next_attempt_at is moved
-- 60,000,000 hours (~6,845 years) on, past the end of what the claim walks (webhook_deliveries_due,
-- `next_attempt_at <= now()`), and moved back when it is released: the time of its next attempt kept exactly (a
-- retry's back-off, the claim's oldest-first order), where 'infinity' would lose it. A held one is at or after year
-- 5000, still a date a client decodes (Python's end at year 9999). Held: its endpoint is disabled (PATCH
-- active=false; released when it is enabled again: due when it was), or its tenant moved out of this cell (its
-- leftover copy kept until a purge, maybe never; its target delivers them: held by the mover once the target takes the
-- tenant's writes, ledger_webhook_hold_tenant, so that holding adds nothing to the freeze; never released, a move back
-- purges the copy first). Left due, such rows sat at the front of the due index (due for hours, days) and every claim
-- of every deliverer stepped over each of them, with its subplans: ~4 buffers a row, for every tenant's webhooks
-- (tests/integration/store/test_webhook_reads.py). A move's copy being made ('arriving') is not held: stepped over for
-- as long as the move lasts, due the moment the tenant is active (held, its release would fall in the freeze). The
-- claim still checks both (a row written in a race stays due: stepped over, never claimed). What shows: GET
-- /api/webhook_deliveries gives a held delivery no next_attempt_at (cell/store/webhooks.py).
-- Built on a live cell (cell/store/migrate.py NO_TRANSACTION): the index CONCURRENTLY first, then each statement on
-- its own, each safe to run again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_held ON webhook_deliveries (endpoint_id)
    WHERE status = 'pending' AND next_attempt_at >= '5000-01-01 00:00:00+00';

-- A redelivery (a row failed or succeeded before, made pending again) is held if its endpoint is disabled, read again
-- under a share lock then (its latest version: an enable in flight is waited for; one after it waits for this row's
-- commit and its release finds it): never a row held behind an enable.
CREATE OR REPLACE FUNCTION ledger_webhook_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'pending'
          AND NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = NEW.endpoint_id AND active)
          AND (SELECT active FROM webhook_endpoints WHERE id = NEW.endpoint_id FOR SHARE) IS NOT TRUE THEN
        NEW.next_attempt_at := NEW.next_attempt_at + interval '60000000 hours';
    END IF;
    RETURN NEW;
END $$;

-- A tenant moved out of this cell: its pending deliveries held (the mover's last word here, after its target took the
-- tenant's writes: control_plane/moves.py). The rows held now; none for a tenant not moved out; safe to run again.
CREATE OR REPLACE FUNCTION ledger_webhook_hold_tenant(p_tenant text) RETURNS bigint LANGUAGE sql AS $$
    WITH held AS (
        UPDATE webhook_deliveries SET next_attempt_at = next_attempt_at + interval '60000000 hours'
        WHERE tenant_id = p_tenant AND status = 'pending' AND next_attempt_at < '5000-01-01 00:00:00+00'
          AND EXISTS (SELECT 1 FROM tenants WHERE id = p_tenant AND state = 'moved_out')
        RETURNING 1
    )
    SELECT count(*) FROM held
$$;

-- An endpoint disabled: its pending deliveries held; enabled, its held ones released if its tenant is served.
CREATE OR REPLACE FUNCTION ledger_webhook_endpoint_active() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT NEW.active THEN
        UPDATE webhook_deliveries SET next_attempt_at = next_attempt_at + interval '60000000 hours'
        WHERE endpoint_id = NEW.id AND status = 'pending' AND next_attempt_at < '5000-01-01 00:00:00+00';
    ELSIF NEW.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()) THEN
        UPDATE webhook_deliveries SET next_attempt_at = next_attempt_at - interval '60000000 hours'
        WHERE endpoint_id = NEW.id AND status = 'pending' AND next_attempt_at >= '5000-01-01 00:00:00+00';
    END IF;
    RETURN NULL;
END $$;

SET lock_timeout = '10s';
CREATE OR REPLACE TRIGGER webhook_deliveries_hold_again BEFORE UPDATE ON webhook_deliveries
    FOR EACH ROW WHEN (NEW.status = 'pending' AND NEW.next_attempt_at < '5000-01-01 00:00:00+00'
                       AND OLD.status <> 'pending')
    EXECUTE FUNCTION ledger_webhook_hold();
CREATE OR REPLACE TRIGGER webhook_endpoints_deliveries AFTER UPDATE OF active ON webhook_endpoints
    FOR EACH ROW WHEN (OLD.active IS DISTINCT FROM NEW.active) EXECUTE FUNCTION ledger_webhook_endpoint_active();
RESET lock_timeout;

-- The deliveries held already when this was applied: of the tenants moved out then and of the disabled endpoints.
UPDATE webhook_deliveries d SET next_attempt_at = d.next_attempt_at + interval '60000000 hours'
WHERE d.status = 'pending' AND d.next_attempt_at < '5000-01-01 00:00:00+00'
  AND (d.tenant_id IN (SELECT id FROM tenants WHERE state = 'moved_out')
       OR d.endpoint_id IN (SELECT id FROM webhook_endpoints WHERE NOT active));
