-- The accounts' metadata index is now read (routine ledger_accounts_matching: accounts by metadata) and without its
-- pending list: with fastupdate, new accounts' entries wait in an unsorted list that every search reads whole until
-- a vacuum merges it (59 more buffers for one match after 20,000 new accounts; up to gin_pending_list_limit, 4 MB, of
-- pages per search). Each new account now enters the index's tree at once, a few pages. The list left from before
-- is merged here.
ALTER INDEX ledger_accounts_metadata SET (fastupdate = off);
SELECT gin_clean_pending_list('ledger_accounts_metadata');
