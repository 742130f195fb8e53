-- A posting's Idempotency-Key is kept with its first answer by ledger_post itself, in the posting's transaction (one
-- statement a POST, no answer written after the commit): `response` is then the answer as rendered before the call
-- and `facts` the routine's own answer (commit time, entries applied now, an archive on a failed balance lock),
-- from which a replay finishes it with the same function as the first answer (as events do: 0041_event_facts.sql).
-- NULL facts: `response` is already final (the other resources' keys, stored after their commit).
ALTER TABLE idempotency_keys ADD COLUMN facts jsonb;
-- A posting's key row holds its answer (~1.9 kB for a 2-entry transaction): past the default 2 kB tuple target
-- PostgreSQL compressed it with pglz on every insert (as events were, 0044). Rows up to 8 kB stay as they are.
ALTER TABLE idempotency_keys SET (toast_tuple_target = 8160);
