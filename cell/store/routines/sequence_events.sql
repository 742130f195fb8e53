-- The events sequencer (see 0040_events.sql): gives the next per-tenant positions to events whose writing
-- transaction ended before the oldest one still running (the horizon), in (txid, seq) order, at most p_limit
-- a call, skipping tenants that are not active (a move's). One sequencer at a time (a transaction-scoped
-- advisory lock; a second caller returns 0 at once).
-- Returns how many events it positioned. Never called by a posting.
-- Its plans are made on a connection's first calls, perhaps while a new cell's events table is still empty, and
-- kept until the next analyze, which may be a minute and tens of thousands of events later. Made so, the batch was
-- found by a scan of the table and each of its rows by comparing it with every row of the table (~1.4 s a call at
-- 7,600 events); with sequential scans off, by walking the whole primary key. So: no sequential scan, hash or
-- merge join (as ledger_post), and each row updated by the row id the batch read it at (a TID scan: nothing else
-- changes an event, and the advisory lock keeps a second sequencer off). tests/integration/store/test_sequencer_reads.py
CREATE OR REPLACE FUNCTION ledger_sequence_events(p_limit integer DEFAULT 10000)
RETURNS integer LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    v_horizon xid8 := pg_snapshot_xmin(pg_current_snapshot());
    v_floor timestamptz;
    v_count integer;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7311900002) THEN
        RETURN 0;
    END IF;
    -- The events this call leaves to later ones (0224): written by a transaction committed now but above the horizon
    -- (the range of events_unpositioned read below, with the batch's snapshot, taken after this), by one in progress
    -- now or by one to come (ledger_event_time_floor, read before that snapshot: a writer that ends in between is in
    -- the range), or left by the batch's limit (then not bounded: no floor from this call).
    v_floor := ledger_event_time_floor();
    WITH batch AS (
        SELECT ctid AS row_id, seq, tenant_id, txid, event_time FROM events
        WHERE position IS NULL AND txid < v_horizon
          -- A tenant being moved is left to the move (ledger_sequence_tenant_events, in the freeze): its copy
          -- on the target arrives frozen, with the source's txids, and must not be numbered there.
          AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = events.tenant_id AND t.state <> 'active')
        ORDER BY txid, seq LIMIT p_limit
    ), later AS MATERIALIZED (  -- the events committed above the horizon (up to 1,000 read: more, not bounded)
        SELECT count(*) <= 1000 AS bounded, min(u.event_time) AS earliest FROM (
            SELECT event_time FROM events WHERE position IS NULL AND txid >= v_horizon LIMIT 1001) u
    ), floor AS MATERIALIZED (  -- this call's floor: every event a later call positions is at or after it
        SELECT CASE WHEN v_floor IS NOT NULL AND l.bounded AND (SELECT count(*) FROM batch) < p_limit
                    THEN least(v_floor, l.earliest) END AS at  -- (least() skips a NULL: none earlier)
        FROM later l
    ), bases AS MATERIALIZED (  -- each tenant's last position and its time bounds (0198, 0224), once, before any row
        -- is updated (an index lookup interleaved with the update would step over every row this statement numbered)
        SELECT t.tenant_id, coalesce(l.position, 0) AS base,
               CASE WHEN l.position IS NOT NULL THEN coalesce(l.event_time_max, (  -- not known (0198): found once
                   SELECT max(e.event_time) FROM events e WHERE e.tenant_id = t.tenant_id AND e.position IS NOT NULL))
               END AS bound, l.event_time_floor AS floor
        FROM (SELECT DISTINCT tenant_id FROM batch) t
        LEFT JOIN LATERAL (SELECT e.position, e.event_time_max, e.event_time_floor FROM events e
                           WHERE e.tenant_id = t.tenant_id AND e.position IS NOT NULL
                           ORDER BY e.position DESC LIMIT 1) l ON true
    ), numbered AS MATERIALIZED (
        -- A row's floor: the call's, or the earliest time of the tenant's rows in this call if earlier (of those
        -- after it would do, but a window back from the batch's end is a second sort: 1.07-1.09 the time of a call
        -- against 1.01-1.02, for floors at most the span of one call's times lower, which the lists' margin
        -- dwarfs); never below the tenant's last (greatest() skips a NULL: not known).
        SELECT b.row_id, s.base + row_number() OVER w AS position, greatest(s.bound, max(b.event_time) OVER w) AS bound,
               greatest(s.floor, CASE WHEN f.at IS NOT NULL THEN least(f.at, min(b.event_time) OVER t) END) AS floor
        FROM batch b JOIN bases s ON s.tenant_id = b.tenant_id CROSS JOIN floor f
        WINDOW w AS (PARTITION BY b.tenant_id ORDER BY b.txid, b.seq ROWS UNBOUNDED PRECEDING),
               t AS (PARTITION BY b.tenant_id)
    )
    UPDATE events e SET position = n.position, event_time_max = n.bound, event_time_floor = n.floor
    FROM numbered n WHERE e.ctid = n.row_id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END $$;
