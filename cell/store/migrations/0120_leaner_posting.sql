-- A posting's writes, fewer (see cell/store/routines/post.sql's header for the whole count).
-- balance_effects_version (account_id, lock_version) gave every queued effect an entry too, under a NULL lock
-- version: no query ever looks one up there (each names a lock version: `=`, `<=`, `>`, IS NOT NULL, all of which
-- imply the partial index's predicate), and NULLs never conflicted. Applied rows only now: one index entry fewer
-- per queued effect (two per async 2-entry posting), and the queue's dead versions leave none behind.
CREATE UNIQUE INDEX balance_effects_version_applied ON balance_effects (account_id, lock_version)
    WHERE lock_version IS NOT NULL;
DROP INDEX balance_effects_version;
ALTER INDEX balance_effects_version_applied RENAME TO balance_effects_version;
-- The effective-time buckets are updated in place by every apply (one row per account and day): room on each
-- page keeps those updates HOT (no new index entry, the old version pruned in place), as account_balances
-- (fillfactor 50) already does. Pages written from now on.
ALTER TABLE effective_balance_buckets SET (fillfactor = 50);
