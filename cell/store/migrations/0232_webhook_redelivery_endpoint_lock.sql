-- A redelivery (POST .../redeliver, ledgerctl webhooks redeliver) racing a pause or an enable of its endpoint (PATCH
-- active) leaves it held if the endpoint is paused once both committed and due if it is active, whichever commits
-- first. 0229's ledger_webhook_hold share-locked the endpoint only when its snapshot read it paused: a pause in flight
-- was not waited for (read active, the row left due), and the pause did not see the row (not pending in its snapshot,
-- never locked by it): due on a paused endpoint, stepped over by every claim until it was enabled again
-- (tests/integration/store/test_webhook_held.py). Now the endpoint row is share-locked first, always, and its latest
-- version read: a pause or an enable in flight (its UPDATE holds the row) is waited for and its outcome read; one after
-- it waits for the redelivery's commit and holds or releases the row with the others. FOR SHARE, not FOR KEY SHARE:
-- only FOR SHARE conflicts with the PATCH's lock (FOR NO KEY UPDATE). The lock order is 0230's: the endpoint, then
-- its deliveries in event order (the earlier pending one ledger_webhook_waits share-locks, the later one
-- ledger_webhook_hold_later holds); the redelivered row itself is locked before, but a pause or an enable never waits
-- for it (not pending in its snapshot). Cost: a redelivery locks its endpoint row (once per transaction per endpoint;
-- a fan-out of that endpoint in the meantime skips it to its next round, as during a PATCH); no other path changes.
-- In one transaction: the function only (the trigger webhook_deliveries_hold_again calls it by name).

CREATE OR REPLACE FUNCTION ledger_webhook_hold() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    endpoint_active boolean;
BEGIN
    IF OLD.status = 'pending' THEN
        RETURN NEW;
    END IF;
    SELECT active INTO endpoint_active FROM webhook_endpoints WHERE id = NEW.endpoint_id FOR SHARE;
    IF endpoint_active IS NOT TRUE OR ledger_webhook_waits(NEW.endpoint_id, NEW.entity_id, NEW.event_position) THEN
        NEW.next_attempt_at := NEW.next_attempt_at + interval '60000000 hours';
    END IF;
    RETURN NEW;
END $$;
