-- A moving tenant's events, all positioned at once (control_plane/moves.py, inside the freeze): the caller holds
-- the tenant's exclusive fence, so every transaction that wrote one of its events has ended and no horizon is
-- needed; they take the next positions in (txid, seq) order, after those the sequencer gave (all of which
-- are below every txid left: see 0040_events.sql). Transaction ids mean nothing on another cell: after this,
-- the copy carries no unpositioned event. Serialised with ledger_sequence_events by its advisory lock.
-- Planned and updating as ledger_sequence_events does (no sequential scan, hash or merge join; each row by the row
-- id it was read at): the freeze's time goes to the events waiting for a position, not to the tenant's history.
CREATE OR REPLACE FUNCTION ledger_sequence_tenant_events(p_tenant text) RETURNS integer LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM pg_advisory_xact_lock(7311900002);
    WITH base AS MATERIALIZED (  -- before any row is updated (see ledger_sequence_events)
        SELECT coalesce(l.position, 0) AS position,
               CASE WHEN l.position IS NOT NULL THEN coalesce(l.event_time_max, (  -- not known (0198): found once
                   SELECT max(e.event_time) FROM events e WHERE e.tenant_id = p_tenant AND e.position IS NOT NULL))
               END AS bound
        FROM (SELECT 1) one
        LEFT JOIN LATERAL (SELECT e.position, e.event_time_max FROM events e
                           WHERE e.tenant_id = p_tenant AND e.position IS NOT NULL
                           ORDER BY e.position DESC LIMIT 1) l ON true
    ), numbered AS MATERIALIZED (
        SELECT e.ctid AS row_id, base.position + row_number() OVER w AS position,
               greatest(base.bound, max(e.event_time) OVER w) AS bound
        FROM events e, base WHERE e.tenant_id = p_tenant AND e.position IS NULL
        WINDOW w AS (ORDER BY e.txid, e.seq ROWS UNBOUNDED PRECEDING)
    )
    UPDATE events e SET position = n.position, event_time_max = n.bound FROM numbered n WHERE e.ctid = n.row_id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END $$;
