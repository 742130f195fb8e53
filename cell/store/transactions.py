"""Ledger transactions' SQL, wrapped once: `post` and `transition` are the one place that knows the arguments of
`ledger_post` and `ledger_transition` (routines/); fetch, versions, list."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from cell.ledger.errors import PostingRejected
from cell.ledger.models import Posting, TransactionState
from cell.store import changes, entries
from cell.store.categories import IN_CATEGORY
from cell.store.errors import rejection
from cell.store.filters import OPERATORS_SQL, Where, at_most, own_rows
from cell.store.queries import Q

# ledger_post_queued_group leaves the group to one ledger_post call a posting (a key's replay, a sync-only account,
# an Idempotency-Key twice in the group...): raised before it writes anything.
QUEUED_GROUP_DECLINED = "LG014"
# A metadata filter matching at most this many transactions has them read by id for a list of transactions.
METADATA_READ_BY_IDS_MAX = 1000
# An account's or a category's transactions, when its accounts have at most this many entries, are read by id for a
# list of transactions (a page costs about 4 buffers an entry, ~8,000 at most); more, by the walk of the tenant's
# transactions in the page's order, which reads every transaction it passes (~3 buffers each) to find the account's.
ACCOUNTS_READ_BY_IDS_MAX = 2000


class EntryResult(msgspec.Struct, frozen=True):
    """An entry applied in its posting: its account's lock version and running sums right after it."""

    id: uuid.UUID
    lock_version: int
    pending_debits: int
    pending_credits: int
    posted_debits: int
    posted_credits: int
    pending_amount: int
    posted_amount: int
    available_debits: int
    available_credits: int
    available_amount: int


class Rejected(msgspec.Struct, frozen=True):
    """A posting of a group refused by its balance lock or lock_version (routines/post_in_group.sql)."""

    sqlstate: str
    detail: str | None = None


class PostResult(msgspec.Struct, frozen=True):
    """What `ledger_post` answers: a replayed Idempotency-Key, or the commit time and the entries applied now (or,
    from ledger_post_in_group, `rejected`: nothing of the posting was written)."""

    replay: bool = False
    created_at: datetime | None = None
    entries: list[EntryResult] = []
    lock_wait_s: float = 0.0
    archived_reason: str | None = None  # 'balance_lock_failure': archived instead of refused
    rejected: Rejected | None = None


class TransitionResult(msgspec.Struct, frozen=True):
    updated_at: datetime
    lock_wait_s: float = 0.0


class ReplaceResult(msgspec.Struct, frozen=True):
    """What `ledger_replace_entries` answers: the change's time and the new entries applied in it."""

    updated_at: datetime
    entries: list[EntryResult] = []
    lock_wait_s: float = 0.0


_post_result = msgspec.json.Decoder(PostResult)
_replace_result = msgspec.json.Decoder(ReplaceResult)
_transition_result = msgspec.json.Decoder(TransitionResult)


def _checks(posting: Posting) -> list[dict[str, Any]]:
    """The balance locks in the form `ledger_check` reads."""
    checks = []
    for e in posting.entries:
        if not e.condition.is_empty():
            check: dict[str, Any] = {"account_id": e.ledger_account_id, **e.condition.balances}
            if e.condition.lock_version is not None:
                check["lock_version"] = e.condition.lock_version
            checks.append(check)
    return checks


def post_result(raw: str | bytes) -> PostResult:
    """`ledger_post`'s answer, as the call returned it or as its Idempotency-Key keeps it (idempotency_keys.facts)."""
    return _post_result.decode(raw)


def _post_args(posting: Posting, events: list | None, answer: bytes | None = None) -> tuple:
    s, idem = posting.state, posting.idempotency
    return (posting.tenant_id, idem.key if idem else None, idem.request_hash if idem else None,
            s.id, s.ledger_id, s.description, s.status, s.effective_at, s.external_id, s.metadata,
            s.reverses_ledger_transaction_id, [e.id for e in s.ledger_entries],
            [e.ledger_account_id for e in s.ledger_entries], [e.direction for e in s.ledger_entries],
            [e.amount for e in s.ledger_entries], posting.apply_accounts, _checks(posting), s, s.ledgerable_type,
            s.ledgerable_id, [e.metadata for e in posting.entries], posting.partially_posts,
            posting.archive_on_lock_failure, events, answer)


def locks_another(posting: Posting) -> bool:
    """A reversal or a partial post: `ledger_post` locks and changes another transaction's row."""
    return posting.partially_posts is not None or posting.state.reverses_ledger_transaction_id is not None


def _queued_group_args(postings: list[tuple[Posting, list | None, bytes | None]]) -> tuple:
    """ledger_post_queued_group's arguments: `_post_args` of each posting, as arrays (per posting, then per entry)."""
    states = [p.state for p, _, _ in postings]
    keys = [p.idempotency for p, _, _ in postings]
    entry_postings = [n for n, s in enumerate(states, 1) for _ in s.ledger_entries]
    ledger_entries = [e for s in states for e in s.ledger_entries]
    return (postings[0][0].tenant_id, [s.id for s in states], [s.ledger_id for s in states],
            [s.description for s in states], [s.status for s in states], [s.effective_at for s in states],
            [s.external_id for s in states], [s.metadata for s in states], [s.ledgerable_type for s in states],
            [s.ledgerable_id for s in states], states, [e for _, events, _ in postings for e in events or ()],
            [k.key if k else None for k in keys], [k.request_hash if k else None for k in keys],
            [answer for _, _, answer in postings], entry_postings, [e.id for e in ledger_entries],
            [e.ledger_account_id for e in ledger_entries], [e.direction for e in ledger_entries],
            [e.amount for e in ledger_entries], [e.metadata for p, _, _ in postings for e in p.entries])


async def post(conn: asyncpg.Connection, posting: Posting, events: list | None = None,
               answer: bytes | None = None) -> PostResult:
    """Write a posting in one call of `ledger_post` (one round trip, one database transaction); `events`, rendered
    by the service, are written with it (routines/events.sql); so is `answer`, kept with the posting's
    Idempotency-Key (the answer rendered before the call, finished from the facts the routine keeps beside it)."""
    return post_result(await conn.fetchval(Q["post_transaction"], *_post_args(posting, events, answer)))


async def _set_wise(conn: asyncpg.Connection, postings: list[tuple[Posting, list | None, bytes | None]]) -> str | None:
    """Postings that apply no account now (neither a reversal, a partial post nor one archived at creation: no
    effect at all, ledger_post's) written set-wise, one `ledger_post_queued_group` call for all
    (routines/post_queued_group.sql: the rows one `ledger_post` call each writes): its answer, the same for each;
    None (nothing written) when any posting is of another kind or the routine declines them (QUEUED_GROUP_DECLINED).
    Within a transaction, under a savepoint (a decline leaves it usable)."""
    if not postings or any(p.apply_accounts or locks_another(p) or p.state.status == "archived"
                           for p, _, _ in postings):
        return None
    try:
        async with conn.transaction() if conn.is_in_transaction() else contextlib.nullcontext():
            return await conn.fetchval(Q["post_queued_group"], *_queued_group_args(postings))
    except asyncpg.PostgresError as exc:
        if exc.sqlstate != QUEUED_GROUP_DECLINED:
            raise
        return None


async def post_group(conn: asyncpg.Connection, postings: list[tuple[Posting, list | None, bytes | None]],
                     lock_first: list[str] | None = None, isolated: bool = False,
                     ) -> list[PostResult | PostingRejected]:
    """Many postings (each with its events and kept answer, as `post` takes them) in one round trip and ONE database
    transaction (asyncpg's fetchmany: pipelined, atomic), one `ledger_post` call each, in order: each posting's own
    answer, as `post` gives it; if any call fails, none was written (group commit, cell/service/posting_groups.py).
    `isolated`: through ledger_post_in_group, a subtransaction per posting: one refused by its balance lock or
    lock_version is undone alone and its answer is the PostingRejected `post` raises for it; the others are written
    (without, such a refusal fails the whole statement, as any error). `lock_first`:
    accounts whose balance rows are locked first, in one statement, after the tenant's write fence (every write's
    first lock, routines/fence.sql) and in account order (ledger_lock, as a posting alone locks its own), then the
    postings: an explicit transaction, four round trips. Postings that apply no account now (an async group) go
    set-wise instead, one `ledger_post_queued_group` call for the group (the same rows, about half the database's
    CPU), unless it declines them (QUEUED_GROUP_DECLINED, nothing written): then one `ledger_post` call each."""
    if not lock_first and (raw := await _set_wise(conn, postings)) is not None:
        return [post_result(raw) for _ in postings]
    query = Q["post_transaction_in_group" if isolated else "post_transaction"]
    args = [_post_args(p, events, answer) for p, events, answer in postings]
    if lock_first:
        async with conn.transaction():
            await conn.execute(Q["lock_accounts"], postings[0][0].tenant_id, lock_first)
            rows = await conn.fetchmany(query, args)
    else:
        rows = await conn.fetchmany(query, args)
    results: list[PostResult | PostingRejected] = []
    for row in rows:
        result = post_result(row[0])
        results.append(result if result.rejected is None else rejection(result.rejected.sqlstate,
                                                                          result.rejected.detail))
    return results


async def post_many(conn: asyncpg.Connection, postings: list[tuple[Posting, list | None]]) -> None:
    """Many postings (each with its events) through the same `ledger_post`, pipelined (asyncpg's executemany: one
    network round trip for all, atomic). For postings whose answer needs nothing `ledger_post` reports (no balance
    lock, no resulting balances, no idempotency replay expected): the bulk path, which reads what it wrote back.
    Postings that apply no account now go set-wise, as a group of them does (`_set_wise`)."""
    if await _set_wise(conn, [(p, events, None) for p, events in postings]) is not None:
        return
    await conn.executemany(Q["post_transaction"], [_post_args(p, events) for p, events in postings])


def pgbench_post_sql(tenant_id: str, ledger_id: str, debit: str, credit: str, apply: str) -> str:
    """The posting `post` writes, as one SQL statement for pgbench (the benchmarks' floor): a 2-entry posted
    transaction of 100 from `debit` to `credit` (SQL uuid expressions); `apply` is the SQL array applied now."""
    return (f"SELECT ledger_post('{tenant_id}', NULL, NULL, gen_random_uuid(), '{ledger_id}'::uuid, 'bench', "
            f"'posted', now(), NULL, '{{}}'::jsonb, NULL, ARRAY[gen_random_uuid(), gen_random_uuid()], "
            f"ARRAY[{debit}, {credit}], ARRAY['debit', 'credit'], ARRAY[100, 100]::bigint[], "
            f"{apply}, '[]'::jsonb, '{{}}'::jsonb);\n")


async def transition(conn: asyncpg.Connection, tenant_id: str, *, expected_version: int, status: str | None,
                     description: str | None, metadata: dict | None, apply_all: bool,
                     state: TransactionState, events: list | None = None, external_id: str | None = None,
                     ledgerable: tuple[str | None, str | None] = (None, None),
                     cleared: list[str] | None = None) -> TransitionResult:
    """Move a pending transaction to posted or archived and/or edit it, as version `expected_version` + 1 (None:
    a field unchanged; `cleared`: the fields of description and external_id set to null)."""
    raw = await conn.fetchval(Q["transition_transaction"], tenant_id, state.id, expected_version, status, description,
                              metadata, apply_all, state, events, external_id, *ledgerable, cleared or [])
    return _transition_result.decode(raw)


async def replace_entries(conn: asyncpg.Connection, posting: Posting, *, expected_version: int, apply_all: bool,
                          events: list | None = None) -> ReplaceResult:
    """A pending transaction's entries replaced by `posting`'s (its state: the transaction as version
    `expected_version` + 1 records it, with the new entries and effective time; routines/replace_entries.sql)."""
    s = posting.state
    raw = await conn.fetchval(
        Q["replace_entries"], posting.tenant_id, s.id, expected_version, s.effective_at,
        [e.id for e in s.ledger_entries], [e.ledger_account_id for e in s.ledger_entries],
        [e.direction for e in s.ledger_entries], [e.amount for e in s.ledger_entries],
        [e.metadata for e in posting.entries], posting.apply_accounts, apply_all, _checks(posting), s, events)
    return _replace_result.decode(raw)


async def fetch(conn: asyncpg.Connection, tenant_id: str, txn_id) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["fetch_transaction"], tenant_id, txn_id)


async def fetch_many(conn: asyncpg.Connection, tenant_id: str, txn_ids: list) -> list:
    return await conn.fetch(Q["fetch_transactions"], tenant_id, txn_ids)


async def fetch_versions(conn: asyncpg.Connection, tenant_id: str, txn_id) -> list:
    return await conn.fetch(Q["fetch_versions"], tenant_id, txn_id)


async def list_versions_page(conn: asyncpg.Connection, tenant_id: str, *, after_seq: int, limit: int,
                             ledger_transaction_id=None, version: list[tuple[str, int]] = (),
                             created_at: list[tuple[str, Any]] = (), statement_id=None) -> list:
    w = Where(tenant_id)
    w.add("v.seq > {}", after_seq)
    versions = "ledger_transaction_versions"
    if statement_id is not None:
        # The versions of the statement's entries' transactions as they stood when it was created.
        ref = w.bind(statement_id)
        named = f"transaction_id = ANY (ARRAY(SELECT DISTINCT transaction_id FROM ledger_statement_entries($1, {ref})))"
        versions = own_rows(versions, [named])
        # Committed then (0217): the writer visible in the statement's snapshot, begun before it was taken; a
        # statement made before 0217, by the version's start time alone.
        s = f"(SELECT s.{{}} FROM ledger_account_statements s WHERE s.tenant_id = $1 AND s.id = {ref})"
        w.clauses.append(f"CASE WHEN {s.format('versions_snapshot')} IS NULL "
                         f"THEN v.created_at <= {s.format('created_at')} "
                         f"ELSE v.created_at <= {s.format('versions_at')} "
                         f"AND pg_visible_in_snapshot(v.audit_txid, {s.format('versions_snapshot')}) END")
    if ledger_transaction_id is not None:
        versions = own_rows(versions, [f"transaction_id = {w.bind(ledger_transaction_id)}"])  # a few, by the key
    for column, bounds in (("version", version), ("created_at", created_at)):
        for op, value in bounds:
            w.add(f"v.{column} {OPERATORS_SQL[op]} {{}}", value)
    limit_ref = w.bind(limit)
    return await conn.fetch(
        f"SELECT v.seq, v.transaction_id, v.version, v.snapshot, v.hash, v.created_at, "
        f"ledger_version_entries(v.snapshot) AS entries, t.* FROM {versions} v "
        # what the version is shown with beyond its snapshot: the transaction's posting, archive and links
        f"CROSS JOIN LATERAL (SELECT t.version AS current_version, t.posted_at, t.archived_reason, "
        f"t.partially_posts_id, t.reversed_by_id FROM ledger_transactions t "
        f"WHERE t.tenant_id = $1 AND t.id = v.transaction_id LIMIT 1) t "
        f"WHERE v.tenant_id = $1{w.sql()} ORDER BY v.seq LIMIT {limit_ref}", *w.args)


async def list_page(conn: asyncpg.Connection, tenant_id: str, *, after: tuple | None, limit: int,
                    order_by: str = "created_at", descending: bool = False, ledger_id=None, status=(), ids=(),
                    external_id=None, metadata=None, ledger_account_id=None, category_id=None, ledgerable_type=None,
                    ledgerable_id=None, reverses_id=None, partially_posts_id=None,
                    effective_at: list[tuple[str, Any]] = (), posted_at: list[tuple[str, Any]] = (),
                    updated_at: list[tuple[str, Any]] = (), settlement_id=None,
                    amount: list[tuple[str, int]] = ()) -> list:
    """A page ordered by row number (created_at) or by (effective_at, row number); `after` is the last row's
    position in that order. `settlement_id`: the transactions of the entries that settlement settles. `amount`:
    bounds on what a transaction moves, the sum of its debit entries (equal to its credits'). An account's or a
    category's transactions, when its accounts have at most ACCOUNTS_READ_BY_IDS_MAX entries, are read by id after
    one bounded probe of them (beside a page's order, plans walked the tenant's transactions for them: an account's
    on a plan made while the tables were tiny, ~80,000 buffers at 20,000 postings of other accounts, one of 150
    entries with any plan ~60,500, a category's with any plan, ~120,000); more, by that walk, which then finds a page
    sooner. A metadata filter's transactions, when at most METADATA_READ_BY_IDS_MAX, likewise, found by the metadata
    index (ledger_transactions_matching); more, by the walk of the tenant's transactions. Bounds on updated_at, and
    lower ones on posted_at, likewise (changes.transactions, by the index of when each last changed)."""
    w = Where(tenant_id)
    named = []  # conditions that name the page's candidates by id
    if settlement_id is not None:
        named.append("id = ANY (ARRAY(SELECT DISTINCT e.transaction_id FROM ledger_account_settlement_entries c "
                     "JOIN ledger_entries e ON e.id = c.entry_id WHERE c.tenant_id = $1 "
                     f"AND c.settlement_id = {w.bind(settlement_id)} AND c.role = 'settled'))")
    if ledger_account_id is not None:
        mine = await entries.of_accounts(conn, tenant_id, "transaction_id", [ledger_account_id],
                                         ACCOUNTS_READ_BY_IDS_MAX)
        if mine is not None:
            named.append(f"id = ANY({w.bind(mine)}::uuid[])")
        else:
            w.add("t.id IN (SELECT transaction_id FROM ledger_entries WHERE ledger_account_id = {})",
                  ledger_account_id)
    if category_id is not None:
        members, theirs = await entries.of_category(conn, tenant_id, "transaction_id", category_id,
                                                    ACCOUNTS_READ_BY_IDS_MAX)
        if theirs is not None:
            named.append(f"id = ANY({w.bind(theirs)}::uuid[])")
        elif members is not None:
            w.add("t.id IN (SELECT transaction_id FROM ledger_entries WHERE ledger_account_id = ANY({}::uuid[]))",
                  members)
        else:
            w.add(f"t.id IN (SELECT transaction_id FROM ledger_entries WHERE ledger_account_id {IN_CATEGORY})",
                  category_id)
    # A transaction whose entries were replaced (0206) is the account's or category's by its own entries only: its
    # discarded ones are found above too (a probe for one rarely true, for no other transaction).
    live_touch = ("(t.entries_version IS NULL OR EXISTS (SELECT 1 FROM ledger_entries l WHERE l.transaction_id = t.id "
                  "AND ledger_entry_live(l.version, t.entries_version) AND l.ledger_account_id {}))")
    if ledger_account_id is not None:
        w.add(live_touch.format("= {}"), ledger_account_id)
    if category_id is not None:
        w.add(live_touch.format(IN_CATEGORY), category_id)
    if metadata:
        matching = await at_most(conn, "SELECT ledger_transactions_matching($1, $2::jsonb, $3)", tenant_id,
                                 metadata, most=METADATA_READ_BY_IDS_MAX)
        if matching is not None:
            named.append(f"id = ANY({w.bind(matching)}::uuid[])")
        else:
            w.add("t.metadata @> {}::jsonb", metadata)
    if (since := await changes.transactions(conn, tenant_id, updated_at=updated_at, posted_at=posted_at)) is not None:
        named.append(f"id = ANY({w.bind(since)}::uuid[])")
    transactions = own_rows("ledger_transactions", named)
    if status:
        w.add("t.status = ANY({}::text[])", list(status))
        if "posted" not in status:
            w.clauses.append(entries.NOT_POSTED)
    if ids:
        w.add("t.id = ANY({}::uuid[])", list(ids))
    for column, value in (("ledger_id", ledger_id), ("external_id", external_id),
                          ("ledgerable_type", ledgerable_type), ("ledgerable_id", ledgerable_id),
                          ("reverses_id", reverses_id), ("partially_posts_id", partially_posts_id)):
        if value is not None:
            w.add(f"t.{column} = {{}}", value)
    for column, bounds in (("effective_at", effective_at), ("posted_at", posted_at), ("updated_at", updated_at)):
        for op, value in bounds:
            w.add(f"t.{column} {OPERATORS_SQL[op]} {{}}", value)
    for op, value in amount:
        w.add("(SELECT sum(e.amount) FROM ledger_entries e WHERE e.transaction_id = t.id AND e.direction = 'debit' "
              f"AND {entries.LIVE}) "
              f"{OPERATORS_SQL[op]} {{}}::numeric", value)
    order_sql = w.keyset("t", order_by, after, descending)
    limit_ref = w.bind(limit)
    return await conn.fetch(
        "SELECT t.seq, t.id, t.ledger_id, t.description, t.status, t.effective_at, t.external_id, t.metadata, "
        "t.version, t.reverses_id, t.reversed_by_id, t.posted_at, t.archived_at, t.created_at, t.updated_at, "
        "t.ledgerable_type, t.ledgerable_id, t.archived_reason, t.partially_posts_id "
        f"FROM {transactions} t WHERE t.tenant_id = $1{w.sql()} ORDER BY {order_sql} LIMIT {limit_ref}", *w.args)
