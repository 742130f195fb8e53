-- Whether a tenant takes work that is not a write of its own request (a webhook delivery's fan-out, claim and
-- attempt results: cell/store/sql/webhooks.sql), under its write fence: the shared lock ledger_fence takes, held to
-- the end of the caller's transaction. A tenant move's freeze (the exclusive form) waits such work out, and work
-- that comes after it finds the tenant frozen and records nothing on the source (whose rows the move has read): the
-- target's workers do it again (at least once).
CREATE OR REPLACE FUNCTION ledger_tenant_open(p_tenant text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(ledger_fence_key(p_tenant));
    IF EXISTS (SELECT 1 FROM tenants WHERE id = p_tenant AND state = 'active') THEN
        RETURN true;
    END IF;
    PERFORM ledger_thaw(p_tenant);  -- a freeze past its lease ends here too (fence.sql)
    RETURN EXISTS (SELECT 1 FROM tenants WHERE id = p_tenant AND state = 'active');
END $$;
