-- The key of a tenant's write fence (an advisory lock): shared by every write, exclusive for a move's freeze and a
-- delete (cell/store/sql/idempotency.sql). An inlined SQL function: the same expression wherever it is called.
-- (control_plane/moves.py writes the expression itself: a cell it reads may run an older version of these.)
CREATE OR REPLACE FUNCTION ledger_fence_key(p_tenant text) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT hashtextextended('tenant:' || p_tenant, 0)
$$;

-- A move's freeze past its lease (frozen_until, 0223: its mover died or stalled in it) ended: the tenant active again,
-- in the caller's transaction (its row locked to the caller's commit). True when this call ended it. A mover commits
-- a freeze to its flip by clearing frozen_until (an UPDATE of the same row, control_plane/moves.py): the two
-- serialise on the row, and whichever comes second finds the other's outcome, so that the source never takes a
-- write after the flip and a flip never follows writes the move did not copy.
CREATE OR REPLACE FUNCTION ledger_thaw(p_tenant text) RETURNS boolean LANGUAGE sql AS $$
    UPDATE tenants SET state = 'active', frozen_until = NULL
    WHERE id = p_tenant AND state = 'frozen' AND frozen_until <= clock_timestamp()
    RETURNING true
$$;

-- The tenant write fence, first statement of every write: a move's exclusive lock waits out the writes in
-- flight; a frozen (LG003), unknown (LG011), moved-out or arriving (LG012) tenant is refused, but one whose freeze's
-- lease is over is made active (ledger_thaw) and its write goes on.
CREATE OR REPLACE FUNCTION ledger_fence(p_tenant text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
    v_until timestamptz;
BEGIN
    -- Shared advisory lock: a tenant move takes the exclusive form to wait out every write in flight.
    PERFORM pg_advisory_xact_lock_shared(ledger_fence_key(p_tenant));
    SELECT state, frozen_until INTO v_state, v_until FROM tenants WHERE id = p_tenant;
    IF v_state = 'frozen' AND v_until <= clock_timestamp() THEN
        PERFORM ledger_thaw(p_tenant);
        -- A new snapshot: this call's thaw, or another writer's committed meanwhile, or the mover's commit to its flip.
        SELECT state INTO v_state FROM tenants WHERE id = p_tenant;
    END IF;
    IF v_state IS NULL THEN
        RAISE EXCEPTION 'unknown tenant' USING ERRCODE = 'LG011';
    ELSIF v_state = 'frozen' THEN
        RAISE EXCEPTION 'tenant is frozen for a move' USING ERRCODE = 'LG003';
    ELSIF v_state = 'moved_out' THEN
        RAISE EXCEPTION 'tenant has moved to another cell' USING ERRCODE = 'LG012';
    ELSIF v_state = 'arriving' THEN  -- a move's copy, not the tenant's books until the flip (0225)
        RAISE EXCEPTION 'tenant is being moved to this cell' USING ERRCODE = 'LG012';
    END IF;
END $$;
