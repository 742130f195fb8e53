-- A moving tenant's events, all positioned at once (control_plane/moves.py, inside the freeze): the caller holds
-- the tenant's exclusive fence, so every transaction that wrote one of its events has ended and no horizon is
-- needed; they take the next positions in (txid, seq) order, after those the sequencer gave (all of which
-- are below every txid left: see 0040_events.sql). Transaction ids mean nothing on another cell: after this,
-- the copy carries no unpositioned event. Serialised with ledger_sequence_events by its advisory lock.
-- Planned and updating as ledger_sequence_events does (no sequential scan, hash or merge join; each row by the row
-- id it was read at): the freeze's time goes to the events waiting for a position, not to the tenant's history.
-- Their floors (0224): with every event of the tenant positioned by this call, none left committed or beyond a limit,
-- a later one is written by a transaction in progress now (one that waits on the fence and finds the tenant active
-- again, the move abandoned or its lease over) or to come: ledger_event_time_floor alone bounds them.
CREATE OR REPLACE FUNCTION ledger_sequence_tenant_events(p_tenant text) RETURNS integer LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    v_floor timestamptz;
    v_count integer;
BEGIN
    PERFORM pg_advisory_xact_lock(7311900002);
    v_floor := ledger_event_time_floor();
    WITH base AS MATERIALIZED (  -- before any row is updated (see ledger_sequence_events)
        SELECT coalesce(l.position, 0) AS position,
               CASE WHEN l.position IS NOT NULL THEN coalesce(l.event_time_max, (  -- not known (0198): found once
                   SELECT max(e.event_time) FROM events e WHERE e.tenant_id = p_tenant AND e.position IS NOT NULL))
               END AS bound, l.event_time_floor AS floor
        FROM (SELECT 1) one
        LEFT JOIN LATERAL (SELECT e.position, e.event_time_max, e.event_time_floor FROM events e
                           WHERE e.tenant_id = p_tenant AND e.position IS NOT NULL
                           ORDER BY e.position DESC LIMIT 1) l ON true
    ), numbered AS MATERIALIZED (  -- floors as ledger_sequence_events gives them
        SELECT e.ctid AS row_id, base.position + row_number() OVER w AS position,
               greatest(base.bound, max(e.event_time) OVER w) AS bound,
               greatest(base.floor, CASE WHEN v_floor IS NOT NULL THEN least(v_floor, min(e.event_time) OVER ()) END)
                   AS floor
        FROM events e, base WHERE e.tenant_id = p_tenant AND e.position IS NULL
        WINDOW w AS (ORDER BY e.txid, e.seq ROWS UNBOUNDED PRECEDING)
    )
    UPDATE events e SET position = n.position, event_time_max = n.bound, event_time_floor = n.floor
    FROM numbered n WHERE e.ctid = n.row_id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END $$;
