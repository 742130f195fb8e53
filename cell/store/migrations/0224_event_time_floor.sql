-- An event's event_time_floor: a lower bound on the event_time of every event of its tenant positioned after it (NULL:
-- not known), given with the position by the sequencers (ledger_sequence_events, ledger_sequence_tenant_events, from
-- ledger_event_time_floor: routines/event_time_floor.sql says what the bound assumes) and never changed; non-decreasing
-- along a tenant's stream; moves copy it with the position. The mirror of event_time_max (0198): a list of the events
-- at or before a time ends at the first position whose floor is after it by more than a margin (ledger_events_until,
-- the margin for the clocks of the cells a moved stream was sequenced on), where it read the stream to its end.
-- Schema only, and no rewrite: a nullable column without a default. The events positioned before it keep NULL (not
-- known: a search never stops on them), so a list up to a time before this migration reads to the first event
-- positioned after it; the next sequencer call for a tenant starts its floors from its own bound.
-- The floor costs the sequencer little: one read of pg_stat_activity and a range of events_unpositioned (the events
-- committed above the horizon, at most 1,001 read) a call, a window over the batch's sort and a column of rows it
-- rewrites anyway (sequencer calls of 2,000 events of 20 tenants against the routines before, 35 paired calls a run,
-- median ratio of seven runs on a shared 2-core host: 1.02, 1.02, 1.05, 1.06, 1.01, 1.00, 1.04; with a floor per row
-- from the rows after it in the call, a second sort: 1.07-1.09).
SET lock_timeout = '10s';
ALTER TABLE events ADD COLUMN IF NOT EXISTS event_time_floor timestamptz;
RESET lock_timeout;
