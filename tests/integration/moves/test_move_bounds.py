"""A tenant's history of events, idempotency keys, audit links, webhook deliveries and bulk requests moves exactly,
rows changed after the last catch-up round began included (a key claimed before it and answered after it, an event
positioned later, links sealed later, a delivery made before and attempted after, a bulk request completed after, an
account renamed after, an entry's metadata edited again after);
and the final catch-up, inside the freeze, reads what changed since that round began, not the history (the rows its
own statements examine, from their plans: rows, never time)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest

from cell.ledger.commands import LedgerCreate, LedgerUpdate
from cell.ledger.models import (
    Condition,
    EntryRequest,
    IdemKey,
    Posting,
    TransactionState,
    VersionEntry,
)
from cell.store import (
    accounts,
    audit,
    bulk,
    entries,
    events,
    idempotency,
    ledgers,
    tenants,
    transactions,
    webhooks,
)
from cell.service import ledgers as ledgers_service
from cell.service.context import AccountCache, CellContext
from cell.store.db import _init_connection, create_pool
from cell.store.migrate import migrate
from control_plane import operations
from control_plane.catalog import connect, migrate_catalog
from control_plane.moves import (
    BOUNDED,
    OVERRIDES,
    TENANT_TABLES,
    Mover,
    _select,
    discover,
    fence_point,
    fetch_move,
    plan_move,
    start_move,
)
from control_plane.settings import ControlPlaneSettings
from tests.integration.conftest import cell_settings

HISTORY = 300  # postings (each with its idempotency key, event, version and audit link) before the move


@pytest.fixture(scope="module")
async def world(make_database, redis_url):
    suffix = uuid.uuid4().hex[:6]
    settings = ControlPlaneSettings(database_url=make_database(f"cp_bounds_{suffix}", migrate_cell=False),
                                    redis_url=redis_url, actor="tests")
    conn = await connect(settings.database_url)
    try:
        await migrate_catalog(conn)
        cells = {}
        for name in ("bd-1", "bd-2"):
            cells[name] = make_database(f"{name.replace('-', '_')}_{suffix}")
            await operations.add_cell(conn, settings, name, "http://127.0.0.1:9", cells[name], check_api=False)
        yield {"conn": conn, "settings": settings, "cells": cells}
    finally:
        await conn.close()


async def _connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await _init_connection(conn)
    return conn


class Books:
    """One tenant's ledger, two accounts and a webhook endpoint, written through the store as the cell writes."""

    def __init__(self, conn: asyncpg.Connection, tenant_id: str) -> None:
        self.conn, self.tenant_id = conn, tenant_id

    async def open(self) -> Books:
        self.ledger = uuid.uuid4()
        await ledgers.insert(self.conn, self.ledger, self.tenant_id, name="main", description=None, metadata={})
        self.accounts = []
        for normal in ("debit", "credit"):
            account = uuid.uuid4()
            await accounts.insert(self.conn, account, self.tenant_id, ledger_id=self.ledger, name=normal,
                                  description=None, normal_balance=normal, currency="USD", currency_exponent=2,
                                  metadata={}, sync_only=False)
            self.accounts.append(str(account))
        self.endpoint = uuid.uuid4()
        await webhooks.insert_endpoint(self.conn, self.endpoint, self.tenant_id, url="http://127.0.0.1:9/hook",
                                       event_names=[], description=None, metadata={}, key="k")
        return self

    async def post(self, key: str, *, answer: bool = True, event: bool = True) -> uuid.UUID:
        """A posting claiming `key` (its answer stored after the commit, as the API does, unless not `answer`),
        and its event (not positioned yet)."""
        debit, credit = self.accounts
        state = TransactionState(
            id=uuid.uuid4(), ledger_id=self.ledger, description=key, status="posted", effective_at=datetime.now(UTC),
            external_id=None, metadata={}, reverses_ledger_transaction_id=None,
            ledger_entries=[VersionEntry(uuid.uuid4(), uuid.UUID(a), d, 100) for a, d in ((debit, "debit"),
                                                                                          (credit, "credit"))])
        await transactions.post(self.conn, Posting(
            tenant_id=self.tenant_id, state=state, idempotency=IdemKey(key, key.encode()),
            entries=[EntryRequest(a, d, 100, Condition({})) for a, d in ((debit, "debit"), (credit, "credit"))],
            apply_accounts=sorted([debit, credit])))
        if event:
            await self.conn.execute("SELECT ledger_event($1, 'ledger_transaction', 'ledger_transaction.created', $2, "
                                    "$3)", self.tenant_id, state.id, {"id": str(state.id), "key": key})
        if answer:
            await self.answer(key)
        return state.id

    async def claim_ledger(self, key: str) -> None:
        """A ledger created with `key` claimed, its answer to be stored after the commit (as an API before answers
        were kept in the claim's transaction did: a key claimed by it during an upgrade)."""
        ledger = uuid.uuid4()
        async with self.conn.transaction():
            await tenants.fence(self.conn, self.tenant_id)
            assert not await idempotency.claim(self.conn, self.tenant_id, IdemKey(key, key.encode()), "ledger", ledger)
            await ledgers.insert(self.conn, ledger, self.tenant_id, name=key, description=None, metadata={})

    async def answer(self, key: str) -> None:
        await self.conn.execute("UPDATE idempotency_keys SET status_code = 201, response = $3 WHERE tenant_id = $1 "
                                "AND key = $2 AND response IS NULL", self.tenant_id, key, json.dumps({"key": key}).encode())

    async def settle(self) -> None:
        """Every event positioned and fanned out to the endpoint, every version linked."""
        await events.sequence_tenant(self.conn, self.tenant_id)
        while (await webhooks.fan_out(self.conn, self.endpoint, 1000, 3600))[1]:
            pass
        async with self.conn.transaction():
            await audit.seal_tenant(self.conn, self.tenant_id)

    async def pending_deliveries(self) -> list[uuid.UUID]:
        return [r[0] for r in await self.conn.fetch("SELECT id FROM webhook_deliveries WHERE tenant_id = $1 AND "
                                                    "status = 'pending' ORDER BY seq", self.tenant_id)]

    async def bulk_request(self, results: int, *, complete: bool) -> uuid.UUID:
        request = uuid.uuid4()
        await bulk.insert_request(self.conn, request, self.tenant_id, action_type="create",
                                  resource_type="ledger_transaction", metadata={},
                                  resources=[{"n": i} for i in range(results)])
        if complete:
            await self.complete(request, results)
        return request

    async def complete(self, request: uuid.UUID, results: int) -> None:
        await bulk.insert_results(self.conn, self.tenant_id, request, [
            (i, "ledger_transaction", uuid.uuid4(), {"n": i}, "successful", None) for i in range(results)])
        assert await bulk.complete(self.conn, request) is not None


async def _books_on_source(conn, settings: ControlPlaneSettings, cells: dict, name: str) -> Books:
    """A new tenant (its name `name`) on bd-1, and its books opened there through a connection of their own."""
    tenant_id = f"bd-{uuid.uuid4().hex[:8]}"
    await operations.create_tenant(conn, settings, tenant_id, name, "bd-1")
    return await Books(await _connect(cells["bd-1"]), tenant_id).open()


async def _mover(conn, settings: ControlPlaneSettings, cells: dict, tenant_id: str) -> Mover:
    """A move of the tenant from bd-1 to bd-2, started, its mover connected to both cells (closed by the caller)."""
    move = await start_move(conn, settings, await plan_move(conn, settings, tenant_id, "bd-2"))
    mover = Mover(conn, settings, await fetch_move(conn, move["id"]))
    mover.src, mover.dst = await _connect(cells["bd-1"]), await _connect(cells["bd-2"])
    mover.tables = await discover(mover.src)
    return mover


async def _steps(mover: Mover, until: str) -> None:
    """The mover's steps from where it is up to `until` (not run), as Mover.run goes."""
    step = "copy" if mover.move["step"] == "planned" else mover.move["step"]
    while step != until:
        following = await getattr(mover, f"step_{step}")()
        await mover.save(following)
        step = following


def _examined(plan: dict) -> int:
    """Rows a plan's scans read from their tables (returned or filtered out), each loop counted."""
    rows = 0
    if plan["Node Type"] in ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan"):
        rows += (plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
                 + plan.get("Rows Removed by Index Recheck", 0)) * plan["Actual Loops"]
    return rows + sum(_examined(p) for p in plan.get("Plans", []))


async def _reads(mover: Mover, delta: dict | None) -> dict[str, int]:
    """Rows the catch-up's first batch of each table examines on the source (a whole read with no `delta`). Scans
    by bitmap only: with a history of a few hundred rows, reading a tenant's rows straight through its index costs the
    planner less than the two index probes of `past OR in a list`, which it chooses for a history of millions
    (loadtests/bench_moves.py measures that one as planned)."""
    out = {}
    async with mover.src.transaction():
        await mover.src.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off")
        for name, t in mover.tables.items():
            query, args = _select(t, None, mover.w["since"], mover.settings.move_batch_rows, delta)
            plan = await mover.src.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", mover.tenant_id, *args)
            out[name] = _examined((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
    return out


async def _table(conn: asyncpg.Connection, t, tenant_id: str) -> list[tuple]:
    """A table's rows of the tenant as a move must carry them: all but the columns each side numbers or sets. A
    delivery held on a side that does not serve the tenant (cell migration 0228) is due when it was."""
    columns = [c for c in t.columns if c != t.identity and c not in OVERRIDES.get(t.name, {})]
    held = "CASE WHEN r.{0} >= '5000-01-01 00:00:00+00' THEN r.{0} - interval '60000000 hours' ELSE r.{0} END"
    selected = ", ".join(held.format(c) if c == "next_attempt_at" else f"r.{c}" for c in columns)
    rows = await conn.fetch(f"SELECT {selected} FROM {t.name} r WHERE {t.scope} "
                            f"ORDER BY {', '.join(f'r.{c}' for c in t.key)}", tenant_id)
    return [tuple(r) for r in rows]


async def test_history_moves_exactly_and_the_final_catch_up_reads_only_what_changed(world):
    conn, settings, cells = world["conn"], world["settings"], world["cells"]
    books = await _books_on_source(conn, settings, cells, "bounds")
    src, tenant_id = books.conn, books.tenant_id
    # The history: postings with keys, events, versions and links; deliveries made and attempted; bulk requests done.
    for i in range(HISTORY):
        await books.post(f"h-{i}")
    await books.settle()
    for delivery in await books.pending_deliveries():
        await webhooks.delivered(src, delivery, 200)
    for _ in range(3):
        await books.bulk_request(5, complete=True)
    edited = [r[0] for r in await src.fetch("SELECT id FROM ledger_entries WHERE tenant_id = $1 ORDER BY seq LIMIT 50",
                                            tenant_id)]
    for entry in edited:
        await entries.set_metadata(src, tenant_id, entry, {"edited": "before the move"})

    mover = await _mover(conn, settings, cells, tenant_id)
    try:
        await _steps(mover, "catch_up")
        await _steps(mover, "pre_verify")
        await _steps(mover, "catch_up")
        # Before the last round: rows it copies unfinished.
        await books.claim_ledger("claimed-before")                      # a key claimed, its answer not stored
        await books.post("settled-before")
        await books.settle()                                            # events positioned, fanned out
        late_delivery = (await books.pending_deliveries())[-1]          # a delivery not attempted yet
        open_request = await books.bulk_request(4, complete=False)      # a bulk request not processed yet
        await books.post("unpositioned", answer=True)                   # an event not positioned, a version unsealed
        await _steps(mover, "freeze")
        assert mover.w["since_open"]["unanswered_keys"] == ["claimed-before"]
        # After the last round began: each of them finished, and new rows past the floors.
        await books.answer("claimed-before")
        await webhooks.delivered(src, late_delivery, 200)
        await books.complete(open_request, 4)
        await books.post("after-the-round", answer=True)
        await accounts.update(src, tenant_id, uuid.UUID(books.accounts[0]), name="renamed", description_set=False,
                              description=None, metadata={"renamed": "after the round"}, sync_only=None)
        await entries.set_metadata(src, tenant_id, edited[7], {"edited": "after the round"})
        await _steps(mover, "final_catch_up")  # the freeze positions the events and links the versions

        src_rows = {name: await mover.src.fetchval(f"SELECT count(*) FROM {name} r WHERE {t.scope}", tenant_id)
                    for name, t in mover.tables.items()}
        assert min(src_rows[n] for n in ("events", "idempotency_keys", "audit_links", "ledger_entries")) > HISTORY
        await mover.src.execute("ANALYZE")
        delta = await mover._delta()
        bounded, whole = await _reads(mover, delta), await _reads(mover, None)
        # On tables this small the planner may find a delivery pending through the index of every tenant's pending
        # deliveries (webhook_deliveries_due) rather than the tenant's own: then the other tenants' on this cell
        # (those an earlier test left, a tenant moved away among them) are read too. Not this tenant's history.
        others_pending = await mover.src.fetchval("SELECT count(*) FROM webhook_deliveries WHERE tenant_id <> $1 "
                                                  "AND status = 'pending'", tenant_id)
        # What the final catch-up reads is what changed since the last round began (a few rows each), not the
        # history; read whole, the same tables cost their history.
        for name in BOUNDED:
            if name != "effective_balance_buckets":  # scoped by the tenant's accounts: their number, not history
                bound = 20 + (others_pending if name == "webhook_deliveries" else 0)
                assert bounded[name] <= bound, json.dumps({n: (bounded[n], whole[n], src_rows[n]) for n in BOUNDED})
        for name in ("events", "idempotency_keys", "audit_links", "webhook_deliveries"):
            assert whole[name] >= HISTORY, (name, whole[name])

        await _steps(mover, "flip")  # the final catch-up and the verification in the freeze
        assert mover.w["verification"]["ok"], mover.w["verification"]["problems"]
        for name in TENANT_TABLES:
            t = mover.tables[name]
            assert await _table(mover.src, t, tenant_id) == await _table(mover.dst, t, tenant_id), name
        answered = await mover.dst.fetchrow("SELECT status_code, response FROM idempotency_keys WHERE tenant_id = $1 "
                                            "AND key = 'claimed-before'", tenant_id)
        assert (answered["status_code"], json.loads(bytes(answered["response"]))) == (201, {"key": "claimed-before"})
        assert await mover.dst.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1 AND position IS NULL",
                                        tenant_id) == 0
        assert await mover.dst.fetchval("SELECT status FROM webhook_deliveries WHERE id = $1",
                                        late_delivery) == "succeeded"
        assert await mover.dst.fetchval("SELECT status FROM bulk_requests WHERE id = $1", open_request) == "completed"
        await _steps(mover, "done")
        await mover.finish()
    finally:
        await mover.src.close()
        await mover.dst.close()
        await src.close()


async def test_catch_up_rounds_stop_once_they_no_longer_shrink(world):
    """A round that copies no fewer rows than the one before ends the catch-up (more would copy as much again), long
    before move_catch_up_rounds_max: here no round is ever small enough (a bound of -1 rows), and nothing writes."""
    conn, cells = world["conn"], world["cells"]
    settings = msgspec.structs.replace(world["settings"], move_catch_up_rows_max=-1)
    books = await _books_on_source(conn, settings, cells, "rounds")
    src, tenant_id = books.conn, books.tenant_id
    for i in range(5):
        await books.post(f"r-{i}")
    mover = await _mover(conn, settings, cells, tenant_id)
    try:
        await _steps(mover, "catch_up")
        assert await mover.step_catch_up() == "pre_verify"
        assert mover.w["rounds"] == 3 < settings.move_catch_up_rounds_max  # the copy, then two rounds of 0 rows
        assert "catch_up_previous_rows" not in mover.w  # the next catch-up starts afresh
    finally:
        await mover.src.close()
        await mover.dst.close()
        await src.close()


class _AnswerLate(CellContext):
    """A cell's use cases whose request, once its first database call is done (the resource committed), waits for
    `gate` before any further one: as a request whose process is slow to answer, past the move's final catch-up."""

    def __post_init__(self) -> None:
        self.gate, self.calls = asyncio.Event(), 0
        super().__post_init__()

    async def _after_first(self) -> None:
        self.calls += 1
        if self.calls > 1:
            await self.gate.wait()

    async def run(self, fn):
        await self._after_first()
        return await super().run(fn)

    async def using(self, fn):
        await self._after_first()
        return await super().using(fn)


async def _until(check, what: str, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not await check():
        assert time.monotonic() < deadline, f"not within {deadline_s} s: {what}"
        await asyncio.sleep(0.02)


async def test_a_resource_answered_after_the_final_catch_up_replays_its_first_answer_on_the_target(world):
    """A ledger created with an Idempotency-Key, its request committed before the freeze and answered only after the
    final catch-up read: after the move, a replay of the key on the target is that first answer byte for byte, not
    the ledger rendered anew (renamed since)."""
    conn, settings, cells = world["conn"], world["settings"], world["cells"]
    books = await _books_on_source(conn, settings, cells, "answers")
    src, tenant_id = books.conn, books.tenant_id
    pools = [await create_pool(cells[name], min_size=1, max_size=2) for name in ("bd-1", "bd-2")]
    source = _AnswerLate(settings=cell_settings(cells["bd-1"]), pool=pools[0], cache=AccountCache(10))
    target = CellContext(settings=cell_settings(cells["bd-2"]), pool=pools[1], cache=AccountCache(10))
    key = IdemKey("made-late", b"the same request")
    mover = await _mover(conn, settings, cells, tenant_id)
    try:
        await _steps(mover, "freeze")
        request = asyncio.create_task(ledgers_service.create_ledger(source, tenant_id, LedgerCreate(name="first"),
                                                                    key))

        async def committed() -> bool:
            assert not request.done() or request.exception() is None, request.exception()
            return bool(await src.fetchval("SELECT count(*) FROM ledgers WHERE tenant_id = $1 AND name = 'first'",
                                           tenant_id))

        await _until(committed, "the ledger committed on the source")
        await _steps(mover, "verify")  # the freeze and the final catch-up
        source.gate.set()
        first = msgspec.json.encode(await asyncio.wait_for(request, 30))
        await _steps(mover, "done")
        await mover.finish()
        assert mover.w["verification"]["ok"], mover.w["verification"]["problems"]
        ledger = json.loads(first)["id"]
        renamed = await ledgers_service.update_ledger(target, tenant_id, uuid.UUID(ledger),
                                                      LedgerUpdate(name="renamed"))
        assert renamed.name == "renamed"
        again = await ledgers_service.create_ledger(target, tenant_id, LedgerCreate(name="first"), key)
        assert msgspec.json.encode(again) == first
    finally:
        source.gate.set()
        for pool in pools:
            await pool.close()
        await mover.src.close()
        await mover.dst.close()
        await src.close()


async def _endpoint(books: Books) -> uuid.UUID:
    endpoint = uuid.uuid4()
    await webhooks.insert_endpoint(books.conn, endpoint, books.tenant_id, url="http://127.0.0.1:9/other",
                                   event_names=[], description=None, metadata={}, key="k")
    return endpoint


async def _fan_out(books: Books, *endpoints: uuid.UUID) -> None:
    await books.settle()
    for endpoint in endpoints:
        while (await webhooks.fan_out(books.conn, endpoint, 1000, 3600))[1]:
            pass


async def test_webhook_endpoints_deleted_during_a_move_are_deleted_on_the_target(world):
    """Endpoints deleted on the source while the tenant moves (one copied before the pre-verification and deleted
    before it, one after it, with deliveries older than its floors the target did not hold yet) are gone on the target
    too: the move succeeds and the target holds
    exactly the source's rows."""
    conn, settings, cells = world["conn"], world["settings"], world["cells"]
    books = await _books_on_source(conn, settings, cells, "deleted")
    src, tenant_id = books.conn, books.tenant_id
    early, late, last = await _endpoint(books), await _endpoint(books), await _endpoint(books)
    for i in range(20):
        await books.post(f"d-{i}")
    await _fan_out(books, early, late, last)
    mover = await _mover(conn, settings, cells, tenant_id)
    try:
        await _steps(mover, "pre_verify")
        # After the last round before the pre-verification: deliveries it did not copy, an endpoint it did.
        await books.post("before-the-pre-verification")
        await _fan_out(books, early, late)
        assert await webhooks.delete_endpoint(src, tenant_id, early)
        await _steps(mover, "catch_up")
        assert await webhooks.delete_endpoint(src, tenant_id, late)
        await books.post("after-the-deletes")
        await _fan_out(books, last)
        await _steps(mover, "freeze")
        assert await webhooks.delete_endpoint(src, tenant_id, last)  # after the last round: the final one deletes it
        await _steps(mover, "done")
        await mover.finish()
        assert mover.w["verification"]["ok"], mover.w["verification"]["problems"]
        for name in TENANT_TABLES:
            t = mover.tables[name]
            assert await _table(mover.src, t, tenant_id) == await _table(mover.dst, t, tenant_id), name
        assert await mover.dst.fetchval("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = ANY($1::uuid[])",
                                        [early, late, last]) == 0
        assert await mover.dst.fetchval("SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1", tenant_id) == 1
    finally:
        await mover.src.close()
        await mover.dst.close()
        await src.close()


async def test_webhook_work_done_after_the_final_catch_up_is_not_left_behind_on_the_source(world):
    """A delivery claimed before the freeze whose attempt is recorded after the final catch-up read, and an endpoint
    fanned out after it (its worker found it behind before the freeze): the source does not record them (the tenant
    is frozen there), so the target's deliveries are the source's exactly and the target's worker attempts them."""
    conn, settings, cells = world["conn"], world["settings"], world["cells"]
    books = await _books_on_source(conn, settings, cells, "attempts")
    src, tenant_id = books.conn, books.tenant_id
    for i in range(5):
        await books.post(f"a-{i}")
    await books.settle()
    mover = await _mover(conn, settings, cells, tenant_id)
    try:
        await _steps(mover, "freeze")
        claimed = [r["delivery_id"] for r in await webhooks.claim(src, 100, 30)]
        assert len(claimed) == 5
        await books.post("positioned-in-the-freeze")  # its event is positioned by the freeze, fanned out after it
        await _steps(mover, "verify")  # the freeze and the final catch-up
        await webhooks.delivered(src, claimed[0], 200)
        await webhooks.attempt_failed(src, claimed[1], 500, "HTTP 500: not 2xx", 60)
        await webhooks.fan_out(src, books.endpoint, 1000, 3600)
        await _steps(mover, "done")
        await mover.finish()
        assert mover.w["verification"]["ok"], mover.w["verification"]["problems"]
        t = mover.tables["webhook_deliveries"]
        assert await _table(mover.src, t, tenant_id) == await _table(mover.dst, t, tenant_id)
        assert await mover.dst.fetchval("SELECT count(*) FROM webhook_deliveries WHERE tenant_id = $1 AND status = "
                                        "'pending' AND attempts = 0", tenant_id) == 5
        # The source's, the target's to make, are held out of its claims' way (cell migration 0228), the target's due.
        assert mover.w["deliveries_held_on_source"] == 5
        assert await mover.src.fetchval("SELECT count(*) FROM webhook_deliveries WHERE tenant_id = $1 AND status = "
                                        "'pending' AND next_attempt_at < '5000-01-01'", tenant_id) == 0
        assert await mover.dst.fetchval("SELECT count(*) FROM webhook_deliveries WHERE tenant_id = $1 AND status = "
                                        "'pending' AND next_attempt_at < '5000-01-01'", tenant_id) == 5
    finally:
        await mover.src.close()
        await mover.dst.close()
        await src.close()


async def test_bulk_keys_claimed_before_0150_are_not_read_as_awaiting_an_answer(world):
    """Bulk resources' keys claimed before 0150 (no status) are marked decided by 0160: a move's rounds no longer list
    them as awaiting an answer (a list that grew with the tenant's bulk history, read under its fence and again in
    the freeze); a key still awaiting its answer stays listed, and a replay of an old key still finds its transaction."""
    conn, settings, cells = world["conn"], world["settings"], world["cells"]
    books = await _books_on_source(conn, settings, cells, "old-bulk")
    src, tenant_id = books.conn, books.tenant_id
    try:
        for i in range(3):
            await books.post(f"bulk-{i}", answer=False)
        # as a bulk claim before 0150 left them
        await src.execute("UPDATE idempotency_keys SET status_code = NULL WHERE tenant_id = $1", tenant_id)
        await books.claim_ledger("in-flight")
        await src.execute("DELETE FROM schema_migrations WHERE name = '0160_bulk_keys_decided'")
        assert "0160_bulk_keys_decided" in await migrate(src)
        point = await fence_point(src, await discover(src), tenant_id, 5)
        assert point["open"]["unanswered_keys"] == ["in-flight"]
        kept = await src.fetch("SELECT key, status_code, resource_id FROM idempotency_keys WHERE tenant_id = $1 "
                               "AND key LIKE 'bulk-%' ORDER BY key", tenant_id)
        assert [r["status_code"] for r in kept] == [201] * 3
        assert await src.fetchval("SELECT count(*) FROM ledger_transactions WHERE id = ANY($1::uuid[])",
                                  [r["resource_id"] for r in kept]) == 3
    finally:
        await src.close()
