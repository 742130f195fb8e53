-- An event's `data` is the object as the API renders it, and the API renders in Python (cell/service/views.py),
-- one renderer. A change made in one routine call (a posting, a transition, a monitor's evaluation in the
-- apply) cannot call Python in the middle: its event stores what the database alone knows in `facts`
-- (the routine's own answer: commit time, entries applied now, a monitor's balances), beside the service's
-- rendering made before the call (or the row the routine read), and the reader finishes it with the same view
-- functions (cell/service/events.py). NULL facts: `data` is already final.
ALTER TABLE events ADD COLUMN facts jsonb;
