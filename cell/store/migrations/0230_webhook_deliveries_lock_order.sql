-- A pause or an enable of an endpoint never deadlocks with the end of one of its deliveries, and neither race leaves a
-- paused endpoint's delivery due or an active one's held (0228, 0229). Lock order, one way: the pause or the enable
-- (PATCH active; its UPDATE locks the endpoint row first) locks every pending delivery of the endpoint in event order,
-- then holds or releases in a snapshot taken after those locks (an end in flight is waited for and what it released
-- or left held is seen; one after it waits for its commit and reads the endpoint's new state). An end (succeeded,
-- failed; ledger_webhook_release_next) reads the endpoint's `active` without a lock: it share-locked the endpoint row
-- after its delivery's, the reverse order, and a pause racing it deadlocked (PostgreSQL chose one: the PATCH answered
-- 409, or the attempt's outcome was lost and it was made again; tests/integration/store/test_webhook_held.py).
-- Cost: an end reads the endpoint without a lock (less than before); a pause or an enable locks each pending delivery
-- of its endpoint once.
-- A redelivery (POST .../redeliver, ledgerctl webhooks redeliver) of an entity's earlier delivery holds the later
-- pending ones of the entity at its endpoint (their due time kept), each released in turn as 0229 releases them: left
-- due behind it, every claim stepped over them until it ended. Cost: a redelivery locks (and holds) the first later
-- pending delivery of its entity (a probe of webhook_deliveries_entity), ~45 us a row; the delivery path is unchanged.
-- In one transaction: the functions and the trigger change together.

-- Every pending delivery of an endpoint locked, in event order (the order an end locks them in: the one ending, then
-- the next one of its entity), to the caller's commit.
CREATE OR REPLACE FUNCTION ledger_webhook_lock_endpoint_deliveries(p_endpoint uuid) RETURNS void LANGUAGE plpgsql
VOLATILE AS $$
BEGIN
    PERFORM FROM webhook_deliveries WHERE endpoint_id = p_endpoint AND status = 'pending'
    ORDER BY event_position FOR NO KEY UPDATE;
END $$;

-- The first pending delivery of (endpoint, entity) after `p_position`, locked to the caller's commit and read in its
-- latest version (an end or a redelivery in flight waited for): what an end releases and a redelivery holds.
CREATE OR REPLACE FUNCTION ledger_webhook_next_pending(p_endpoint uuid, p_entity uuid, p_position bigint,
                                                       OUT id uuid, OUT next_attempt_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    SELECT d.id, d.next_attempt_at INTO id, next_attempt_at FROM webhook_deliveries d
    WHERE d.endpoint_id = p_endpoint AND d.entity_id = p_entity AND d.status = 'pending' AND d.event_position > p_position
    ORDER BY d.event_position LIMIT 1 FOR NO KEY UPDATE;
END $$;

-- An endpoint disabled: its pending deliveries held; enabled, its held ones released if its tenant is served, but for
-- those waiting behind an earlier pending one of their entity (each released when the one before it ends). Either
-- after every pending one is locked: each statement below reads what the ends it waited for committed.
CREATE OR REPLACE FUNCTION ledger_webhook_endpoint_active() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT NEW.active THEN
        PERFORM ledger_webhook_lock_endpoint_deliveries(NEW.id);
        UPDATE webhook_deliveries SET next_attempt_at = next_attempt_at + interval '60000000 hours'
        WHERE endpoint_id = NEW.id AND status = 'pending' AND next_attempt_at < '5000-01-01 00:00:00+00';
    ELSIF NEW.tenant_id NOT IN (SELECT * FROM ledger_unserved_tenants()) THEN
        PERFORM ledger_webhook_lock_endpoint_deliveries(NEW.id);
        UPDATE webhook_deliveries d SET next_attempt_at = d.next_attempt_at - interval '60000000 hours'
        WHERE d.endpoint_id = NEW.id AND d.status = 'pending' AND d.next_attempt_at >= '5000-01-01 00:00:00+00'
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p
                          WHERE p.endpoint_id = d.endpoint_id AND p.entity_id = d.entity_id AND p.status = 'pending'
                            AND p.event_position < d.event_position);
    END IF;
    RETURN NULL;
END $$;

-- A delivery ended (succeeded, failed for good; on a move's target, copied so): the first pending one after it of its
-- entity at its endpoint released if it is held, none is pending before it and the endpoint is active. The endpoint is
-- read, not locked: a pause or an enable in flight has locked this delivery first (this end waited for its commit and
-- reads its outcome) or waits for this end's commit (and holds what this released, or releases what it left held).
-- Not the tenant's state: a move's copy ends and releases as its source did.
CREATE OR REPLACE FUNCTION ledger_webhook_release_next() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    next_id uuid;
    next_at timestamptz;
BEGIN
    SELECT n.id, n.next_attempt_at INTO next_id, next_at
    FROM ledger_webhook_next_pending(NEW.endpoint_id, NEW.entity_id, NEW.event_position) n;
    IF next_id IS NULL OR next_at < '5000-01-01 00:00:00+00' THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM webhook_deliveries
               WHERE endpoint_id = NEW.endpoint_id AND entity_id = NEW.entity_id AND status = 'pending'
                 AND event_position < NEW.event_position) THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = NEW.endpoint_id AND active) THEN
        UPDATE webhook_deliveries SET next_attempt_at = next_attempt_at - interval '60000000 hours' WHERE id = next_id;
    END IF;
    RETURN NULL;
END $$;

-- A redelivery (a row failed or succeeded before, made pending again): the first pending delivery after it of its
-- entity at its endpoint waits for it, held (those after that one wait for that one, held already). Locked first, its
-- latest version read: an end in flight of the one before it (which released it) is waited for, one after this waits
-- for its commit and finds this one pending before it. One row locked a redelivery, however many follow it.
CREATE OR REPLACE FUNCTION ledger_webhook_hold_later() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    next_id uuid;
    next_at timestamptz;
BEGIN
    SELECT n.id, n.next_attempt_at INTO next_id, next_at
    FROM ledger_webhook_next_pending(NEW.endpoint_id, NEW.entity_id, NEW.event_position) n;
    IF next_id IS NOT NULL AND next_at < '5000-01-01 00:00:00+00' THEN
        UPDATE webhook_deliveries SET next_attempt_at = next_attempt_at + interval '60000000 hours' WHERE id = next_id;
    END IF;
    RETURN NULL;
END $$;

SET LOCAL lock_timeout = '10s';
CREATE OR REPLACE TRIGGER webhook_deliveries_hold_later AFTER UPDATE OF status ON webhook_deliveries
    FOR EACH ROW WHEN (OLD.status <> 'pending' AND NEW.status = 'pending')
    EXECUTE FUNCTION ledger_webhook_hold_later();
