-- migrate: no transaction
-- A pending delivery written behind an earlier pending one of its entity at its endpoint (event order per entity: it
-- waits until that one succeeded or failed for good) is held as 0228 holds a paused endpoint's (next_attempt_at
-- 60,000,000 hours on, its own due time kept), and released, due when it was, in the transaction that ends the one
-- before it. Left due, each sat at the front of the due index for as long as the one before it was retried (hours:
-- an endpoint failing, many events per entity) and every claim of every deliverer stepped over it: ~3 buffers a row
-- (tests/integration/store/test_webhook_reads.py). What it keeps: the first pending delivery of an entity at an
-- endpoint is never held for waiting (a paused endpoint's or a moved-out tenant's may be, 0228); each one ending
-- releases the first pending one after it when none is pending before it. Locks are taken in event position order
-- only (a hold share-locks the pending one before it, an end locks the one after it): a hold and the end of the one it
-- waits for are serialised, never a deadlock. Cost: a delivery written, redelivered or ended probes
-- webhook_deliveries_entity once. The claim still checks the order (a row a race left due is stepped over).
-- A move copies held rows as they are and releases them on its target as here: both cells of a move need 0229
-- (control_plane/moves.py MOVE_MIGRATIONS refuses a move otherwise).
-- Built on a live cell: each statement on its own, safe to run again; the triggers before the rows held already.

-- Whether a pending delivery of (endpoint, entity) at `p_position` waits behind an earlier pending one, that one
-- share-locked to the caller's commit (so that it cannot end unseen: its end waits and then releases the first after
-- it). VOLATILE: read in a fresh snapshot, rows a statement wrote before this one included.
CREATE OR REPLACE FUNCTION ledger_webhook_waits(p_endpoint uuid, p_entity uuid, p_position bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM FROM webhook_deliveries
    WHERE endpoint_id = p_endpoint AND entity_id = p_entity AND status = 'pending' AND event_position < p_position
    ORDER BY event_position LIMIT 1 FOR SHARE;
    RETURN FOUND;
END $$;

-- A delivery made (a fan-out, a move's copy) behind an earlier pending one of its entity: held.
CREATE OR REPLACE FUNCTION ledger_webhook_hold_waiting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF ledger_webhook_waits(NEW.endpoint_id, NEW.entity_id, NEW.event_position) THEN
        NEW.next_attempt_at := NEW.next_attempt_at + interval '60000000 hours';
    END IF;
    RETURN NEW;
END $$;

-- A redelivery (a row failed or succeeded before, made pending again) is held if its endpoint is disabled (0228) or
-- an earlier pending delivery of its entity is there before it.
CREATE OR REPLACE FUNCTION ledger_webhook_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'pending'
          AND (ledger_webhook_waits(NEW.endpoint_id, NEW.entity_id, NEW.event_position)
               OR NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = NEW.endpoint_id AND active)
                  AND (SELECT active FROM webhook_endpoints WHERE id = NEW.endpoint_id FOR SHARE) IS NOT TRUE) THEN
        NEW.next_attempt_at := NEW.next_attempt_at + interval '60000000 hours';
    END IF;
    RETURN NEW;
END $$;

-- A delivery ended (succeeded, failed for good; on a move's target, copied so): the first pending one after it of its
-- entity at its endpoint released if it is held, none is pending before it and the endpoint is active (a paused one's
-- are released when it is active again; the endpoint share-locked: a pause in flight is waited for, one after it holds
-- what this released). Not the tenant's state: a move's copy ends and releases as its source did.
CREATE OR REPLACE FUNCTION ledger_webhook_release_next() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    next_id uuid;
    next_at timestamptz;
BEGIN
    SELECT id, next_attempt_at INTO next_id, next_at FROM webhook_deliveries
    WHERE endpoint_id = NEW.endpoint_id AND entity_id = NEW.entity_id AND status = 'pending'
      AND event_position > NEW.event_position
    ORDER BY event_position LIMIT 1 FOR NO KEY UPDATE;
    -- One test after the other: the endpoint is locked only to release (a lock on it makes a fan-out skip it).
    IF NOT FOUND OR next_at < '5000-01-01 00:00:00+00' THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM webhook_deliveries
               WHERE endpoint_id = NEW.endpoint_id AND entity_id = NEW.entity_id AND status = 'pending'
                 AND event_position < NEW.event_position) THEN
        RETURN NULL;
    END IF;
    IF (SELECT active FROM webhook_endpoints WHERE id = NEW.endpoint_id FOR SHARE) THEN
        UPDATE webhook_deliveries SET next_attempt_at = next_attempt_at - interval '60000000 hours' WHERE id = next_id;
    END IF;
    RETURN NULL;
END $$;

-- An endpoint disabled: its pending deliveries held; enabled, its held ones released if its tenant is served, but for
-- those waiting behind an earlier pending one of their entity (each released when the one before it ends).
CREATE OR REPLACE FUNCTION ledger_webhook_endpoint_active() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT NEW.active THEN
        UPDATE webhook_deliveries SET next_attempt_at = next_attempt_at + interval '60000000 hours'
        WHERE endpoint_id = NEW.id AND status = 'pending' AND next_attempt_at < '5000-01-01 00:00:00+00';
    ELSIF NEW.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()) THEN
        UPDATE webhook_deliveries d SET next_attempt_at = d.next_attempt_at - interval '60000000 hours'
        WHERE d.endpoint_id = NEW.id AND d.status = 'pending' AND d.next_attempt_at >= '5000-01-01 00:00:00+00'
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p
                          WHERE p.endpoint_id = d.endpoint_id AND p.entity_id = d.entity_id AND p.status = 'pending'
                            AND p.event_position < d.event_position);
    END IF;
    RETURN NULL;
END $$;

SET lock_timeout = '10s';
CREATE OR REPLACE TRIGGER webhook_deliveries_hold_waiting BEFORE INSERT ON webhook_deliveries
    FOR EACH ROW WHEN (NEW.status = 'pending' AND NEW.next_attempt_at < '5000-01-01 00:00:00+00')
    EXECUTE FUNCTION ledger_webhook_hold_waiting();
CREATE OR REPLACE TRIGGER webhook_deliveries_release_next AFTER UPDATE OF status ON webhook_deliveries
    FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status <> 'pending')
    EXECUTE FUNCTION ledger_webhook_release_next();
RESET lock_timeout;

-- The deliveries waiting already when this was applied (each behind one share-locked: an end in flight is waited for,
-- one after it releases what this held).
UPDATE webhook_deliveries d SET next_attempt_at = d.next_attempt_at + interval '60000000 hours'
WHERE d.status = 'pending' AND d.next_attempt_at < '5000-01-01 00:00:00+00'
  AND ledger_webhook_waits(d.endpoint_id, d.entity_id, d.event_position);
