"""Ledger entries' reads: one entry, a transaction's entries, and lists by account, transaction or lock version."""

from __future__ import annotations

import asyncpg

from cell.store import categories, changes
from cell.store.categories import IN_CATEGORY
from cell.store.filters import OPERATORS_SQL, Where, at_most, own_rows

_SELECT_FROM = """SELECT e.seq, e.id, e.transaction_id, e.ledger_account_id, e.direction, e.amount, e.effective_at,
       e.created_at, coalesce(m.metadata, e.metadata) AS metadata, coalesce(m.updated_at, e.created_at) AS updated_at,
       ledger_entry_status(e.version, t.entries_version, t.status) AS status,
       CASE WHEN NOT ledger_entry_live(e.version, t.entries_version) THEN (
           SELECT min(x.created_at) FROM ledger_entries x WHERE x.transaction_id = e.transaction_id
             AND coalesce(x.version, 1) > coalesce(e.version, 1)) END AS discarded_at,
       a.currency, a.currency_exponent, a.normal_balance,
       f.lock_version, f.pending_debits, f.pending_credits, f.posted_debits, f.posted_credits, lb.*
FROM {entries} e
JOIN ledger_transactions t ON t.id = e.transaction_id
JOIN ledger_accounts a ON a.id = e.ledger_account_id
LEFT JOIN balance_effects f ON f.entry_id = e.id AND f.kind = 'entry'
LEFT JOIN ledger_entry_metadata m ON m.entry_id = e.id
CROSS JOIN LATERAL ledger_balances(a.normal_balance, f.pending_debits, f.pending_credits, f.posted_debits,
                                   f.posted_credits) lb
WHERE e.tenant_id = $1"""
_SELECT = _SELECT_FROM.format(entries="ledger_entries")
# The entries that are their transaction's: not discarded by a replacement of a pending transaction's entries (0206).
LIVE = "ledger_entry_live(e.version, t.entries_version)"


async def fetch(conn: asyncpg.Connection, tenant_id: str, entry_id) -> asyncpg.Record | None:
    return await conn.fetchrow(f"{_SELECT} AND e.id = $2", tenant_id, entry_id)


async def set_metadata(conn: asyncpg.Connection, tenant_id: str, entry_id, metadata: dict) -> None:
    """The entry's metadata from now on (ledger_entry_metadata; the entry row itself is never updated)."""
    await conn.execute(
        "INSERT INTO ledger_entry_metadata (entry_id, tenant_id, metadata, updated_at) VALUES ($2, $1, $3, now()) "
        "ON CONFLICT (entry_id) DO UPDATE SET metadata = excluded.metadata, updated_at = excluded.updated_at",
        tenant_id, entry_id, metadata)


async def of_transactions(conn: asyncpg.Connection, tenant_id: str, txn_ids: list) -> list:
    """The entries of these transactions, each transaction's in the order they were written (the order of
    ledger_entries_transaction_seq: no plan walks the tenant's entries for them)."""
    return await conn.fetch(f"{_SELECT} AND e.transaction_id = ANY($2::uuid[]) AND {LIVE} "
                            "ORDER BY e.transaction_id, e.seq", tenant_id, txn_ids)


# Accounts with at most this many entries in all have their entries read by id for a list of entries (their
# transactions, for a list of transactions, up to transactions.ACCOUNTS_READ_BY_IDS_MAX); more, by the accounts' ids. A
# category's accounts so when it has at most CATEGORY_ACCOUNTS_MAX; more, by its closure.
READ_BY_IDS_MAX = 100
CATEGORY_ACCOUNTS_MAX = 1000
# A category of at most this many accounts, whose entries are more, has a page of its entries merged from a page of
# each account's (list_page; each a statement's branch, planned as one account's page: measured, a page of 25 of 8
# accounts' 120 entries 17-21 ms while a connection's first five plans are made, ~4 ms after; of 20 accounts 40-60 ms
# each, no generic plan taken); more accounts (up to CATEGORY_ACCOUNTS_MAX), each one's page in one branch over them,
# planned so (PAGES_PLANNED, undone after) that only the account's own index can give a page.
CATEGORY_MERGED_ACCOUNTS_MAX = 8
PAGES_PLANNED = "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off"
PAGES_PLANNED_UNDONE = "SET LOCAL enable_bitmapscan TO DEFAULT; SET LOCAL enable_sort TO DEFAULT"
# A page whose order one index gives (list_page: by effective time through the transactions' index, or one account's
# by its own): so too, and by one process (workers of a parallel plan each read rows ahead, all of them wasted for a
# page: 114 transactions read for 5 entries).
ORDERED_PAGES_PLANNED = PAGES_PLANNED + "; SET LOCAL max_parallel_workers_per_gather = 0"
ORDERED_PAGES_PLANNED_UNDONE = PAGES_PLANNED_UNDONE + "; SET LOCAL max_parallel_workers_per_gather TO DEFAULT"
# A metadata filter matching at most this many entries has them read by id for a list of entries (as transactions').
METADATA_READ_BY_IDS_MAX = 1000
# The entries of at most this many transactions, found by their effective time or their status (not posted), are read
# by their transactions for a list of entries that names no account or transaction.
TRANSACTIONS_READ_BY_IDS_MAX = 1000
# The condition of the indexes of the transactions not posted (0201), as they state it: a read of transactions (`t`)
# of no status but pending or archived states it too, so that a plan may take them.
NOT_POSTED = "t.status <> 'posted'"


async def of_accounts(conn: asyncpg.Connection, tenant_id: str, column: str, account_ids: list,
                      most: int = READ_BY_IDS_MAX) -> list | None:
    """`column` (id or transaction_id) of the entries of `account_ids`, when they have at most `most` (one bounded
    probe of the accounts' entries); None when more."""
    if column not in ("id", "transaction_id"):
        raise ValueError(f"not an entry's id column: {column!r}")
    return await at_most(conn, f"SELECT e.{column} FROM ledger_entries e WHERE e.ledger_account_id = ANY($1::uuid[]) "
                         "AND e.tenant_id = $2 ORDER BY e.ledger_account_id, e.seq LIMIT $3",
                         account_ids, tenant_id, most=most)


async def of_category(conn: asyncpg.Connection, tenant_id: str, column: str, category_id,
                      most: int = READ_BY_IDS_MAX) -> tuple[list | None, list | None]:
    """The accounts a category reaches, when at most CATEGORY_ACCOUNTS_MAX, and `of_accounts` of them (None, None:
    more accounts; (accounts, None): more entries)."""
    members = await categories.reached(conn, tenant_id, category_id, CATEGORY_ACCOUNTS_MAX)
    return members, None if members is None else await of_accounts(conn, tenant_id, column, members, most)


async def transactions_within(conn: asyncpg.Connection, tenant_id: str, effective_at=(),
                              status: str | None = None) -> list | None:
    """The ids of the transactions effective within these bounds ((op, value) pairs) and, given a status other than
    posted, of that status, when at most TRANSACTIONS_READ_BY_IDS_MAX (a probe of the transactions' index of effective
    time, or of those not posted: 0201); None when more. An entry is effective when its transaction is (ledger_post
    gives it the transaction's time, and neither ever changes), and has its transaction's status."""
    w = Where(tenant_id)
    for op, value in effective_at:
        w.add(f"t.effective_at {OPERATORS_SQL[op]} {{}}", value)
    if status is not None:
        w.add("t.status = {}", status)
        w.clauses.append(NOT_POSTED)
    return await at_most(conn, f"SELECT t.id FROM ledger_transactions t WHERE t.tenant_id = $1{w.sql()} "
                         f"LIMIT ${len(w.args) + 1}", *w.args, most=TRANSACTIONS_READ_BY_IDS_MAX)


async def list_page(conn: asyncpg.Connection, tenant_id: str, *, limit: int, order_by: str, descending: bool,
                    after: tuple | None, ledger_account_id=None, category_id=None, ledger_transaction_id=None,
                    as_of_lock_version=None, direction=None, status=None, statuses=(), ids=(), effective_at=(),
                    updated_at=(), lock_version=(), amount=(), metadata=None, statement_id=None,
                    settlement_id=None, show_deleted: bool = False) -> list:
    """A page ordered by row number or by (effective_at, row number); `after` is the last row's position in that
    order. The entries a settlement or statement holds, a category's (as of_category finds them) and a metadata
    filter's, when at most METADATA_READ_BY_IDS_MAX, found by its indexes (ledger_entries_matching), are read by id
    in a subquery of their own (filters.own_rows); a metadata filter's more, by a walk of the tenant's entries. A
    category's more entries, of at most CATEGORY_MERGED_ACCOUNTS_MAX accounts: a page of each account's (by the
    account's own index, as one account's page), merged: the page's order over all of them took every entry of its
    accounts, sorted, on a plan made while the tables were tiny (~160,900 buffers at 20,000 postings of a busy
    account, by effective time); of more accounts, a page of each account's in one branch over them (their entries
    sorted before: 160,818 more buffers for 9 accounts, one busy). Entries changed since a time (updated_at bounded
    from below) likewise when at most changes.READ_BY_IDS_MAX, found by changes.entries; entries effective within
    bounds or of pending or archived transactions, of no account or transaction named, by their transactions
    (transactions_within) when at most TRANSACTIONS_READ_BY_IDS_MAX (the tenant's entries walked before, at 20,000
    postings: 902 more buffers for a window of 2, 80,385 by effective time, all of them sorted; 120,938 for pending
    ones, 200,428 by effective time); more, by the walk. By effective time, with none of these (or more such
    transactions than that), by the transactions' index of effective time and each one's entries: a page reads its
    rows and those of its effective times (the tenant's every entry was sorted: ~732,000 buffers at 43,000
    postings on plans made while the tables were tiny, ~2,000 after an analyze)."""
    w = Where(tenant_id)
    # Entries discarded by a replacement of their transaction's (0206) only when asked for, when a statement holds them
    # (it is the account as of its lock version, ledger_statement_entries, whose balances count them), or as of a lock
    # version before their discard's archive (balances as of it count them, as a statement made then does).
    deleted_shown = show_deleted or statement_id is not None
    if as_of_lock_version is not None and not deleted_shown:
        w.add(f"({LIVE} OR NOT EXISTS (SELECT 1 FROM balance_effects x WHERE x.entry_id = e.id AND x.kind = 'archive' "
              "AND x.lock_version <= {}))", as_of_lock_version)
    elif not deleted_shown:
        w.clauses.append(LIVE)
    entries = "ledger_entries"
    held = []  # the entries a settlement or statement names, by their ids
    if settlement_id is not None:
        held.append(f"id = ANY (ARRAY(SELECT entry_id FROM ledger_account_settlement_entries WHERE tenant_id = $1 "
                    f"AND settlement_id = {w.bind(settlement_id)} AND role = 'settled'))")
    if statement_id is not None:
        held.append(f"id = ANY (ARRAY(SELECT entry_id FROM ledger_statement_entries($1, {w.bind(statement_id)})))")
    merged = None  # the accounts whose pages are merged into the page
    if category_id is not None:
        members, named = await of_category(conn, tenant_id, "id", category_id)
        if named is not None:
            held.append(f"id = ANY({w.bind(named)}::uuid[])")
        elif members is not None:
            merged = members
        else:
            w.add("e.ledger_account_id " + IN_CATEGORY, category_id)
    if metadata:
        matching = await at_most(conn, "SELECT ledger_entries_matching($1, $2::jsonb, $3)", tenant_id, metadata,
                                 most=METADATA_READ_BY_IDS_MAX)
        if matching is not None:
            held.append(f"id = ANY({w.bind(matching)}::uuid[])")
        w.add("coalesce(m.metadata, e.metadata) @> {}::jsonb", metadata)  # what each of them has when read
    if (changed := await changes.entries(conn, tenant_id, updated_at=updated_at)) is not None:
        held.append(f"id = ANY({w.bind(changed)}::uuid[])")
    unposted = None if status == "posted" else status
    if ((effective_at or unposted) and not held and merged is None and ledger_account_id is None
            and ledger_transaction_id is None and not show_deleted
            and (within := await transactions_within(conn, tenant_id, effective_at, unposted)) is not None):
        held.append(f"transaction_id = ANY({w.bind(within)}::uuid[])")
    # By effective time, nothing named: by the transactions' index of effective time (an entry is effective when its
    # transaction is, stated so that the page's order is that index's), each one's entries, sorted by seq among those
    # of one effective time only (ORDERED_PAGES_PLANNED: an incremental sort, no other).
    by_time = (order_by == "effective_at" and not held and merged is None and ledger_account_id is None
               and ledger_transaction_id is None and not ids and not show_deleted)
    if by_time:
        w.clauses.append("e.effective_at = t.effective_at")
        if unposted is not None:
            w.clauses.append(NOT_POSTED)
        for op, value in effective_at:
            w.add(f"t.effective_at {OPERATORS_SQL[op]} {{}}", value)
        if after is not None:
            w.add(f"t.effective_at {'<=' if descending else '>='} {{}}::timestamptz", after[0])
    entries = own_rows(entries, held)
    if ids:
        w.add("e.id = ANY({}::uuid[])", list(ids))
    for column, bounds in (("e.effective_at", effective_at), ("coalesce(m.updated_at, e.created_at)", updated_at),
                           ("f.lock_version", lock_version), ("e.amount", amount)):
        for op, value in bounds:
            w.add(f"{column} {OPERATORS_SQL[op]} {{}}", value)
    # One account's, nothing held: by the account's own index, named first in the page's order and by `= ANY`, as a
    # category's branch (below): a generic plan made while the tables were tiny walked the tenant's entries in seq
    # order for it, newest first every later entry of the tenant (892 more buffers at 20,000 later postings). Not when
    # another index may serve the page better: entries named by id or transaction, effective within bounds (the
    # account's index of effective time), lock versions bounded (its effects' by lock version), of pending or archived
    # transactions (those not posted, 0201).
    by_account = (ledger_account_id is not None and order_by != "effective_at" and not held and merged is None
                  and not ids and ledger_transaction_id is None and not effective_at and as_of_lock_version is None
                  and not lock_version and unposted is None)
    if by_account:
        w.add("e.ledger_account_id = ANY({}::uuid[])", [ledger_account_id])
    elif ledger_account_id is not None:
        w.add("e.ledger_account_id = {}", ledger_account_id)
    if ledger_transaction_id is not None:
        w.add("e.transaction_id = {}", ledger_transaction_id)
    if as_of_lock_version is not None:
        w.add("f.lock_version <= {}", as_of_lock_version)
    if direction is not None:
        w.add("e.direction = {}", direction)
    # The transactions' own status (the entries' when live); a discarded entry's is archived (ledger_entry_status).
    status_sql = ("ledger_entry_status(e.version, t.entries_version, t.status)"
                  if deleted_shown or as_of_lock_version is not None else "t.status")
    if status is not None:
        w.add(status_sql + " = {}", status)
    if statuses:  # two of the three (the transactions' own status, as `status`; no index of theirs serves a pair)
        w.add(status_sql + " = ANY({}::text[])", list(statuses))
    order_sql = w.keyset("e", order_by, after, descending)
    limit_ref = w.bind(limit)
    rows, page = f"{_SELECT_FROM.format(entries=entries)}{w.sql()}", f" ORDER BY {order_sql} LIMIT {limit_ref}"
    if by_time or by_account:
        if by_account:
            page = f" ORDER BY e.ledger_account_id {'DESC' if descending else 'ASC'}, {order_sql} LIMIT {limit_ref}"
        async with conn.transaction():
            await conn.execute(ORDERED_PAGES_PLANNED)
            found = await conn.fetch(rows + page, *w.args)
            await conn.execute(ORDERED_PAGES_PLANNED_UNDONE)
        return found
    if merged is None:
        return await conn.fetch(rows + page, *w.args)
    merged_order = w.keyset("p", order_by, None, descending)
    if len(merged) <= CATEGORY_MERGED_ACCOUNTS_MAX:  # each account's page (by its own index), merged
        pages = " UNION ALL ".join(f"({rows} AND e.ledger_account_id = {w.bind(a)}{page})" for a in merged)
        return await conn.fetch(f"SELECT p.* FROM ({pages}) p ORDER BY {merged_order} LIMIT {limit_ref}", *w.args)
    # More accounts: each one's page in one branch over them, by the account's own index: the branch's order names the
    # account first, which only that index gives, and names it by `= ANY(ARRAY[...])`: an equality would make it a
    # constant of the branch, out of the order, and the tenant's index of seq would give the order too (a generic plan
    # walked it for an account without entries: ~7,200 buffers at 20,000 postings). Planned with neither a bitmap scan
    # nor a sort (without them a branch read every entry of an account, then sorted them).
    in_order = f" ORDER BY e.ledger_account_id {'DESC' if descending else 'ASC'}, {order_sql} LIMIT {limit_ref}"
    pages = (f"SELECT p.* FROM unnest({w.bind(merged)}::uuid[]) AS member(id) CROSS JOIN LATERAL ({rows} AND "
             f"e.ledger_account_id = ANY(ARRAY[member.id]){in_order}) p ORDER BY {merged_order} LIMIT {limit_ref}")
    async with conn.transaction():
        await conn.execute(PAGES_PLANNED)
        found = await conn.fetch(pages, *w.args)
        await conn.execute(PAGES_PLANNED_UNDONE)
    return found
