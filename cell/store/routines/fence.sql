-- The key of a tenant's write fence (an advisory lock): shared by every write, exclusive for a move's freeze and a
-- delete (cell/store/sql/idempotency.sql). An inlined SQL function: the same expression wherever it is called.
-- (control_plane/moves.py writes the expression itself: a cell it reads may run an older version of these.)
CREATE OR REPLACE FUNCTION ledger_fence_key(p_tenant text) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT hashtextextended('tenant:' || p_tenant, 0)
$$;

-- The tenant write fence, first statement of every write: a move's exclusive lock waits out the writes in
-- flight; a frozen (LG003), unknown (LG011) or moved-out (LG012) tenant is refused.
CREATE OR REPLACE FUNCTION ledger_fence(p_tenant text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
BEGIN
    -- Shared advisory lock: a tenant move takes the exclusive form to wait out every write in flight.
    PERFORM pg_advisory_xact_lock_shared(ledger_fence_key(p_tenant));
    SELECT state INTO v_state FROM tenants WHERE id = p_tenant;
    IF v_state IS NULL THEN
        RAISE EXCEPTION 'unknown tenant' USING ERRCODE = 'LG011';
    ELSIF v_state = 'frozen' THEN
        RAISE EXCEPTION 'tenant is frozen for a move' USING ERRCODE = 'LG003';
    ELSIF v_state = 'moved_out' THEN
        RAISE EXCEPTION 'tenant has moved to another cell' USING ERRCODE = 'LG012';
    END IF;
END $$;
