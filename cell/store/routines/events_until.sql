-- The last position after p_after of a tenant's stream that may hold an event at or before p_time (p_after, or 0
-- with no event: none), found by the stream's floors (event_time_floor, 0224: a lower bound on the time of every event
-- after a position, non-decreasing along it): a page of the events at or before p_time from the cursor p_after ends
-- there (cell/store/events.py), where it read the stream to its end. It is the first position whose floor is after
-- p_time by more than MARGIN: every event after it is after p_time, while the floors and times of a stream sequenced
-- on several cells (a move copies them as they are) come from clocks that may differ by less than MARGIN, and a
-- transaction's start shows a moment after it is taken (routines/event_time_floor.sql). One index lookup for a time
-- before which the stream's last floor is not (a recent time); else a search forward from the cursor, a step doubling
-- each time, then halved between the last two steps: ~2 log2(d) lookups for a position d after the cursor, where the
-- page itself reads from (ledger_events_before searches back from the end: a time d positions back from the end cost
-- ~2 log2(d), 30 lookups for a time before 20,000 events, more than a page that finds its few events at the start).
-- A floor not known (NULL, or no event at a position) counts as not after: the search never stops on it. Index
-- lookups only, whatever plan a young cell made.
DROP FUNCTION IF EXISTS ledger_events_until(text, timestamptz);
CREATE OR REPLACE FUNCTION ledger_events_until(p_tenant text, p_time timestamptz, p_after bigint DEFAULT 0)
RETURNS bigint LANGUAGE plpgsql STABLE SET enable_seqscan = off SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    MARGIN CONSTANT interval := interval '1 minute';
    v_until timestamptz := p_time + MARGIN;
    v_low bigint := p_after;  -- the cursor, or a position whose floor is not after v_until
    v_high bigint;            -- a position whose floor is after it (or the stream's last)
    v_step bigint := 1;
    v_mid bigint;
    v_bound timestamptz;
BEGIN
    SELECT position, event_time_floor INTO v_high, v_bound FROM events
    WHERE tenant_id = p_tenant AND position IS NOT NULL ORDER BY position DESC LIMIT 1;
    IF v_high IS NULL OR v_high <= p_after OR v_bound IS NULL OR v_bound <= v_until THEN
        RETURN coalesce(v_high, 0);
    END IF;
    WHILE v_low + v_step < v_high LOOP
        v_mid := v_low + v_step;
        v_bound := (SELECT event_time_floor FROM events WHERE tenant_id = p_tenant AND position = v_mid);
        IF v_bound > v_until THEN
            v_high := v_mid;
            EXIT;
        END IF;
        v_low := v_mid;
        v_step := v_step * 2;
    END LOOP;
    WHILE v_high - v_low > 1 LOOP
        v_mid := (v_low + v_high) / 2;
        v_bound := (SELECT event_time_floor FROM events WHERE tenant_id = p_tenant AND position = v_mid);
        IF v_bound > v_until THEN
            v_high := v_mid;
        ELSE
            v_low := v_mid;
        END IF;
    END LOOP;
    RETURN v_high;
END $$;
