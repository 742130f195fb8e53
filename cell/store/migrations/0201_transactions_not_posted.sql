-- migrate: no transaction
-- A tenant's transactions not posted (pending: authorizations still open; archived), in seq order and in effective-time
-- order: a list of them (`status=pending`, the like) walked the tenant's transactions, nearly all of them posted, for a
-- page (465 more buffers at 20,000 postings, 486 by effective time: the whole table when fewer than a page are pending;
-- their entries, 120,938). cell/store/transactions.list_page (when no status asked for is 'posted') and
-- entries.transactions_within state the indexes' condition (entries.NOT_POSTED), so that a plan may take them. A posted
-- transaction, most postings, writes no entry in them; a pending one writes one in each, and leaves them when it is
-- posted (the transition's update already writes every index: updated_at changes). Built on a live cell
-- (cell/store/migrate.py NO_TRANSACTION).
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_transactions_not_posted ON ledger_transactions (tenant_id, seq)
    WHERE status <> 'posted';
CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_transactions_not_posted_effective
    ON ledger_transactions (tenant_id, effective_at, seq) WHERE status <> 'posted';
