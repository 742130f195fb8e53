-- The last position of a tenant's stream whose events are all before p_time (0: none), found by the stream's time
-- bounds (event_time_max, 0198: non-decreasing along it): a list of the events at or after p_time starts after it
-- (cell/store/events.py), where it read the stream from its start. Searched back from the stream's end, a step
-- doubling each time, then halved between the last two steps: ~2 log2(d) index lookups for a time d positions from
-- the end (a poll since its last: a few), one for a time after every event. A bound not known (NULL, or no event at
-- a position) counts as not before: the search stops before it. Index lookups only, whatever plan a young cell made.
CREATE OR REPLACE FUNCTION ledger_events_before(p_tenant text, p_time timestamptz) RETURNS bigint
LANGUAGE plpgsql STABLE SET enable_seqscan = off SET enable_bitmapscan = off AS $$
DECLARE
    v_low bigint := 0;  -- a position whose events, and every one before it, are before p_time (0: none)
    v_high bigint;      -- a position whose bound is not before it
    v_step bigint := 1;
    v_mid bigint;
    v_bound timestamptz;
BEGIN
    SELECT position, event_time_max INTO v_high, v_bound FROM events
    WHERE tenant_id = p_tenant AND position IS NOT NULL ORDER BY position DESC LIMIT 1;
    IF v_high IS NULL OR v_bound < p_time THEN
        RETURN coalesce(v_high, 0);
    END IF;
    WHILE v_high - v_step > 0 LOOP
        v_mid := v_high - v_step;
        v_bound := (SELECT event_time_max FROM events WHERE tenant_id = p_tenant AND position = v_mid);
        IF v_bound < p_time THEN
            v_low := v_mid;
            EXIT;
        END IF;
        v_high := v_mid;
        v_step := v_step * 2;
    END LOOP;
    WHILE v_high - v_low > 1 LOOP
        v_mid := (v_low + v_high) / 2;
        v_bound := (SELECT event_time_max FROM events WHERE tenant_id = p_tenant AND position = v_mid);
        IF v_bound < p_time THEN
            v_low := v_mid;
        ELSE
            v_high := v_mid;
        END IF;
    END LOOP;
    RETURN v_low;
END $$;
