-- migrate: no transaction
-- An event's event_time_max: the latest event_time of its tenant's events up to its position (the stream's running
-- maximum), given with the position by the sequencers (ledger_sequence_events, ledger_sequence_tenant_events) and never
-- changed; moves copy it with the position. event_time follows transaction start, positions commit order, so an event's
-- own time may be earlier than the one before it; its bound never is. A list of the events at or after a time starts
-- after the last position bounded before it (ledger_events_before: a search of the bounds by position, back from the
-- stream's end), where it read the stream from its start. The bound costs a posting next to nothing: the sequencer
-- rewrites the row to position it anyway (sequencer calls of 2,000 events, paired: 1.06, 1.05, 0.97 the time before).
-- NULL on a positioned row (one the sequencer of before this migration positioned during an upgrade) is not known: a
-- search counts it as not before any time, and the next sequencer call for the tenant finds the stream's latest time
-- once and carries on from it.
-- Run on a live cell (cell/store/migrate.py NO_TRANSACTION): the column is added alone (a moment's exclusive lock),
-- then the positioned events are bounded a batch of positions of one tenant at a time, each batch committed apart
-- (ledger.event_bounds_batch positions, 10,000 by default), so postings and the sequencer write on meanwhile; in one
-- transaction with the column added, the whole stream's rewrite held every posting back until it ended. Run again
-- (a failed start), it carries on: the rows bounded already keep their bounds and give the next batch its base.
SET lock_timeout = '10s';
ALTER TABLE events ADD COLUMN IF NOT EXISTS event_time_max timestamptz;
RESET lock_timeout;
DO $$
DECLARE
    v_batch bigint := coalesce(nullif(current_setting('ledger.event_bounds_batch', true), ''), '10000')::bigint;
    v_tenant text;
    v_from bigint;
    v_base timestamptz;
BEGIN
    FOR v_tenant IN  -- the tenants with positioned events, by the index of positions (a step per tenant)
        WITH RECURSIVE t(id) AS (
            SELECT min(tenant_id) FROM events WHERE position IS NOT NULL
            UNION ALL
            SELECT (SELECT min(e.tenant_id) FROM events e WHERE e.position IS NOT NULL AND e.tenant_id > t.id)
            FROM t WHERE t.id IS NOT NULL)
        SELECT id FROM t WHERE id IS NOT NULL
    LOOP
        v_from := 0;
        v_base := NULL;  -- the latest time of the tenant's events before v_from (greatest() skips a NULL)
        WHILE v_from <= (SELECT max(position) FROM events WHERE tenant_id = v_tenant AND position IS NOT NULL) LOOP
            WITH batch AS MATERIALIZED (
                SELECT ctid AS row_id, event_time_max AS known,
                       greatest(v_base, max(event_time) OVER (ORDER BY position)) AS bound
                FROM events WHERE tenant_id = v_tenant AND position >= v_from AND position < v_from + v_batch),
            bounded AS (
                UPDATE events e SET event_time_max = b.bound FROM batch b
                WHERE e.ctid = b.row_id AND b.known IS NULL)
            SELECT greatest(v_base, max(bound)) INTO v_base FROM batch;
            COMMIT;
            v_from := v_from + v_batch;
        END LOOP;
    END LOOP;
END $$;
