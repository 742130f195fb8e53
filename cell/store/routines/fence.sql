-- The tenant write fence, first statement of every write: a move's exclusive lock waits out the writes in
-- flight; a frozen (LG003), unknown (LG011) or moved-out (LG012) tenant is refused.
CREATE OR REPLACE FUNCTION ledger_fence(p_tenant text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
BEGIN
    -- Shared advisory lock: a tenant move takes the exclusive form to wait out every write in flight.
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('tenant:' || p_tenant, 0));
    SELECT state INTO v_state FROM tenants WHERE id = p_tenant;
    IF v_state IS NULL THEN
        RAISE EXCEPTION 'unknown tenant' USING ERRCODE = 'LG011';
    ELSIF v_state = 'frozen' THEN
        RAISE EXCEPTION 'tenant is frozen for a move' USING ERRCODE = 'LG003';
    ELSIF v_state = 'moved_out' THEN
        RAISE EXCEPTION 'tenant has moved to another cell' USING ERRCODE = 'LG012';
    END IF;
END $$;
