-- The earliest event_time an event written from now on can carry, for the sequencers' floors (0224): least of this
-- statement's start and the start of every transaction of this database in progress; NULL when not known. An event's
-- time is its writing transaction's now(), its start (routines/events.sql: every writer passes now()), and a
-- transaction's start is what pg_stat_activity shows as xact_start while it runs; one that starts later starts after
-- this statement did. Assumes: events are written by this database's sessions only, each in a transaction of its own
-- (no prepared transaction: one waiting is NULL, as it is in no session); pg_stat_activity shows every session of
-- this database to this routine's owner (SECURITY DEFINER: the cell's login role owns the schema and every cell
-- session logs in as it, cell/api/app.py; a session hidden from it, another role's without pg_read_all_stats held by
-- the owner, makes it NULL: the sequencer's own role, set by SET ROLE, sees no other session's state); and the caller
-- reads the events it bounds by a snapshot taken after this call (READ COMMITTED, the next statement: a writer that
-- ends between the two is seen by the read; under a transaction snapshot, NULL). A transaction's start is shown a
-- moment after it is taken (a backend sets it, then reports it as its transaction begins): the lists' margin
-- (ledger_events_until) covers that moment, as it covers the clocks of the cells a stream was sequenced on.
CREATE OR REPLACE FUNCTION ledger_event_time_floor() RETURNS timestamptz
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_floor timestamptz := statement_timestamp();
    v_hidden boolean;
    v_started timestamptz;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed'
       OR EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE database = current_database()) THEN
        RETURN NULL;
    END IF;
    PERFORM pg_stat_clear_snapshot();  -- the sessions as they are now, not as this transaction first read them
    -- A hidden session shows no type; an autovacuum worker's long transaction writes no event.
    SELECT bool_or(a.backend_type IS NULL), min(a.xact_start) FILTER (WHERE a.backend_type = 'client backend')
    INTO v_hidden, v_started
    FROM pg_stat_activity a WHERE a.datid = (SELECT oid FROM pg_database WHERE datname = current_database());
    IF v_hidden THEN
        RETURN NULL;
    END IF;
    RETURN least(v_floor, v_started);
END $$;
