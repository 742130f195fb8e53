"""ledger_sequence_events: per-tenant positions in (txid, seq) order, never past a transaction still running."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import pytest_asyncio

from cell.store import events

async def listed_in_pages(conn, tenant: str, **filters) -> list[str]:
    """The names of the events a list with `filters` gives, followed page after page (two a page) to its end."""
    listed, after = [], 0
    while page := await events.list_page(conn, tenant, after_position=after, limit=2, **filters):
        listed += [r["event_name"] for r in page]
        after = page[-1]["position"]
    return listed



@pytest_asyncio.fixture
async def conns(routines_database_url):
    opened = [await asyncpg.connect(routines_database_url) for _ in range(2)]
    yield opened
    for conn in opened:
        await conn.close()


async def emit(conn: asyncpg.Connection, tenant: str, name: str) -> None:
    await conn.execute("SELECT ledger_event($1, 'ledger_transaction', $2, $3, '{}'::jsonb)", tenant, name,
                       uuid.uuid4())


async def positions(conn: asyncpg.Connection, tenant: str) -> list[tuple[str, int | None]]:
    rows = await conn.fetch("SELECT event_name, position FROM events WHERE tenant_id = $1 ORDER BY seq", tenant)
    return [(r["event_name"], r["position"]) for r in rows]


async def sequence_until(conn: asyncpg.Connection, tenant: str, name: str, deadline_s: float = 30.0) -> None:
    """Run the sequencer until `name` has a position (another database's short transaction may hold the
    cluster-wide horizon back for a moment)."""
    deadline = time.monotonic() + deadline_s
    while dict(await positions(conn, tenant)).get(name) is None:
        assert time.monotonic() < deadline, f"{name} never positioned"
        await conn.fetchval("SELECT ledger_sequence_events()")
        await asyncio.sleep(0.05)


async def test_positions_follow_transaction_order_and_wait_for_running_writers(conns):
    writer, other = conns
    tenant_a, tenant_b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    await emit(other, tenant_a, "first")
    await emit(other, tenant_b, "b-first")
    async with writer.transaction():
        await emit(writer, tenant_a, "running")          # a running writer holds the horizon back
        await emit(other, tenant_a, "after")
        await sequence_until(other, tenant_a, "first")
        await sequence_until(other, tenant_b, "b-first")
        assert await positions(other, tenant_a) == [("first", 1), ("after", None)]
        assert await positions(other, tenant_b) == [("b-first", 1)]
    await sequence_until(other, tenant_a, "after")
    # the running writer's transaction began first: it comes first of what was left
    assert await positions(other, tenant_a) == [("first", 1), ("running", 2), ("after", 3)]


async def test_a_rolled_back_event_is_never_positioned(conns):
    conn = conns[0]
    tenant = f"r-{uuid.uuid4().hex[:8]}"
    tx = conn.transaction()
    await tx.start()
    await emit(conn, tenant, "gone")
    await tx.rollback()
    await emit(conn, tenant, "kept")
    await sequence_until(conn, tenant, "kept")
    assert await positions(conn, tenant) == [("kept", 1)]


@pytest.mark.parametrize("sequencer", ["ledger_sequence_events()", "ledger_sequence_tenant_events($1)"])
async def test_a_list_from_a_time_skips_only_the_positions_before_it_whatever_order_the_times_came_in(conns,
                                                                                                       sequencer):
    """An event's time is its transaction's start, its position its commit's order: a later position may carry an
    earlier time. A list of the events at or after a time skips the positions whose events, and all before them,
    are before it (their bound, the stream's running latest time, carried from one sequencer call to the next)."""
    conn = conns[0]
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    start = datetime(2026, 5, 1, tzinfo=UTC)

    async def write_and_position(*hours: float) -> None:  # committed in this order, each at start + its hours
        for hour in hours:
            drafts = [{"resource": "ledger_transaction", "event_name": f"at-{hour}", "entity_id": str(uuid.uuid4()),
                       "data": {}}]
            await conn.execute("SELECT ledger_events($1, $2::jsonb, $3, NULL)", tenant, json.dumps(drafts),
                               start + timedelta(hours=hour))
        deadline = time.monotonic() + 30
        while await conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1 AND position IS NULL", tenant):
            assert time.monotonic() < deadline, "never positioned"
            await conn.fetchval(f"SELECT {sequencer}", *([tenant] if "$1" in sequencer else []))
            await asyncio.sleep(0.01)

    await write_and_position(2, 1, 3, 5, 4)  # positions 1-5, bounds 2 2 3 5 5
    await write_and_position(0, 6, 5)  # 6-8 (a time before the bound it follows), bounds 5 6 6
    bounds = await conn.fetch("SELECT event_time_max FROM events WHERE tenant_id = $1 ORDER BY position", tenant)
    assert [(r[0] - start) / timedelta(hours=1) for r in bounds] == [2, 2, 3, 5, 5, 5, 6, 6]
    before = "SELECT ledger_events_before($1, $2)"
    skipped = {hour: await conn.fetchval(before, tenant, start + timedelta(hours=hour))
               for hour in (-1, 0, 2, 2.5, 3.5, 5.5, 6, 7)}
    assert skipped == {-1: 0, 0: 0, 2: 0, 2.5: 2, 3.5: 3, 5.5: 6, 6: 6, 7: 8}

    async def listed_alike(*hours: float) -> None:
        for hour in hours:
            since = start + timedelta(hours=hour)
            wanted = await conn.fetch("SELECT event_name FROM events WHERE tenant_id = $1 AND event_time >= $2 "
                                      "ORDER BY position", tenant, since)
            assert await listed_in_pages(conn, tenant, event_time_start=since) == [r[0] for r in wanted], hour

    await listed_alike(-1, 0, 0.5, 1, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7)
    assert await conn.fetchval(before, f"none-{uuid.uuid4().hex[:8]}", start) == 0  # a tenant without events
    # An event positioned without a bound (by the sequencer of before 0198, during an upgrade): the search counts it
    # as not before any time, and the next call carries on from the stream's latest time, found once.
    await conn.execute("INSERT INTO events (id, tenant_id, resource, event_name, entity_id, data, event_time, txid,"
                       " position) VALUES (gen_random_uuid(), $1, 'ledger_transaction', 'at-8', gen_random_uuid(),"
                       " '{}', $2, pg_current_xact_id(), 9)", tenant, start + timedelta(hours=8))
    await write_and_position(7)  # 10
    bounds = await conn.fetch("SELECT event_time_max FROM events WHERE tenant_id = $1 AND position >= 8 "
                              "ORDER BY position", tenant)
    assert [r[0] and (r[0] - start) / timedelta(hours=1) for r in bounds] == [6, None, 8]
    assert [await conn.fetchval(before, tenant, start + timedelta(hours=h)) for h in (7.5, 8.5)] == [8, 10]
    await listed_alike(5.5, 7, 7.5, 8, 8.5)


async def test_positioning_an_event_does_not_write_its_object_again(conns):
    """The sequencer rewrites a row to position it (0040): in a row past PostgreSQL's TOAST threshold (~2 kB, a
    2-entry transaction's event) the rendered object is kept out of line (0208), written once, so that rewrite
    copies a small row and the same TOAST value; a smaller row stays whole. Read back, both are what was written."""
    conn, _ = conns
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    entry = {"amount": 1234, "direction": "debit", "ledger_account_id": str(uuid.uuid4()), "metadata": {}}
    big = {"object": "ledger_transaction", "description": "card payment " + "x" * 200,
           "ledger_entries": [dict(entry, id=str(uuid.uuid4()), n=n) for n in range(12)]}
    assert len(json.dumps(big)) > 2200
    for name, data in (("big", big), ("small", {"object": "ledger_account"})):
        await conn.execute("SELECT ledger_event($1, 'ledger_transaction', $2, $3, $4::jsonb)", tenant, name,
                           uuid.uuid4(), json.dumps(data))
    stored = "SELECT event_name, pg_column_toast_chunk_id(data) AS chunk, data FROM events WHERE tenant_id = $1"
    before = {r["event_name"]: r for r in await conn.fetch(stored, tenant)}
    assert before["big"]["chunk"] is not None and before["small"]["chunk"] is None
    await sequence_until(conn, tenant, "big")
    await sequence_until(conn, tenant, "small")
    after = {r["event_name"]: r for r in await conn.fetch(stored, tenant)}
    assert after["big"]["chunk"] == before["big"]["chunk"]  # the same value: the rewrite did not copy the object
    assert json.loads(after["big"]["data"]) == big
    assert json.loads(after["small"]["data"]) == {"object": "ledger_account"}


@pytest.mark.parametrize("sequencer", ["ledger_sequence_events()", "ledger_sequence_tenant_events($1)"])
async def test_a_list_up_to_a_time_returns_what_a_scan_of_the_stream_returns_however_the_writers_overlapped(
        routines_database_url, sequencer):
    """An event's time is its transaction's start, its position (txid, seq) order past the horizon: a transaction
    that starts first and writes after others have committed (its transaction id comes with its first write) puts
    an earlier time after later ones, whether it is still running when they are positioned or committed above the
    horizon that another running one holds. The floors the sequencers give (0224: a lower bound on the time of every
    event after a position) hold through both, so a list of the events at or before any time (which ends at the
    first floor after it, ledger_events_until) returns what a scan of the whole stream returns; so does a stream
    copied from a cell whose clock is ahead of this one's by less than the lists' margin."""
    conns = [await asyncpg.connect(routines_database_url) for _ in range(4)]
    auto, holder, committer, runner = conns  # autocommit; holds the horizon; commits above it; runs throughout
    tenant, moved = f"o-{uuid.uuid4().hex[:8]}", f"m-{uuid.uuid4().hex[:8]}"

    async def sequence(of: str) -> None:
        await auto.fetchval(f"SELECT {sequencer}", *([of] if "$1" in sequencer else []))

    async def sequence_all(of: str) -> None:
        deadline = time.monotonic() + 30
        while await auto.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1 AND position IS NULL", of):
            assert time.monotonic() < deadline, "never positioned"
            await sequence(of)
            await asyncio.sleep(0.01)

    async def listed_as_scanned(of: str) -> int:
        times = [r[0] for r in await auto.fetch("SELECT event_time FROM events WHERE tenant_id = $1", of)]
        cuts = {t + timedelta(microseconds=d) for t in times for d in (-1, 0, 1)}
        cuts |= {min(times) - timedelta(hours=1), max(times) + timedelta(hours=1)}
        for cut in sorted(cuts):
            scanned = await auto.fetch("SELECT event_name FROM events WHERE tenant_id = $1 AND position IS NOT NULL"
                                       " AND event_time <= $2 ORDER BY position", of, cut)
            assert await listed_in_pages(auto, of, event_time_end=cut) == [r[0] for r in scanned], cut
        return len(cuts)

    async def floors_hold(of: str) -> None:
        """Every event is at or after the floor of each position before its own, and the floors are known once no
        earlier writer can come (NULL is passed over by every search)."""
        assert await auto.fetchval(
            "SELECT count(*) FROM events a JOIN events b ON b.tenant_id = a.tenant_id AND b.position > a.position"
            " WHERE a.tenant_id = $1 AND b.event_time < a.event_time_floor", of) == 0
        assert await auto.fetchval("SELECT event_time_floor IS NOT NULL FROM events WHERE tenant_id = $1"
                                   " ORDER BY position DESC LIMIT 1", of)

    try:
        started = [c.transaction() for c in (committer, runner, holder)]
        for tx, conn in zip(started, (committer, runner, holder), strict=True):
            await tx.start()
            await conn.fetchval("SELECT 1")  # started in this order (their times), no transaction id yet
        await emit(auto, tenant, "first")
        await emit(holder, tenant, "held")  # the horizon, till it commits
        await emit(committer, tenant, "committed")  # a transaction id above the horizon, an early time
        await started[0].commit()
        await sequence(tenant)  # first (and, by the move's sequencer, committed): "runner" is still running
        await started[2].commit()
        await sequence_all(tenant)
        await emit(runner, tenant, "ran")
        await started[1].commit()
        await sequence_all(tenant)
        await emit(auto, tenant, "last")
        await sequence_all(tenant)
        times = [r[0] for r in await auto.fetch("SELECT event_time FROM events WHERE tenant_id = $1 ORDER BY position",
                                                tenant)]
        assert len(times) == 5 and any(t < max(times[:i]) for i, t in enumerate(times) if i)  # what is under test
        await floors_hold(tenant)
        assert await listed_as_scanned(tenant) > 10

        # Moved: copied as a move copies it (every column) from a cell whose clock is 30 s ahead of this one's,
        # then written on here; a list bounded by the floors alone would stop at the copy's last position.
        await auto.execute(
            "INSERT INTO events (id, tenant_id, resource, event_name, entity_id, data, facts, event_time, txid,"
            " position, event_time_max, event_time_floor) SELECT gen_random_uuid(), $2, resource, event_name,"
            " entity_id, data, facts, event_time + interval '30 s', txid, position, event_time_max + interval '30 s',"
            " event_time_floor + interval '30 s' FROM events WHERE tenant_id = $1", tenant, moved)
        await emit(auto, moved, "on-the-target")
        await sequence_all(moved)
        assert await listed_as_scanned(moved) > 10
    finally:
        for conn in conns:
            await conn.close()


async def test_the_sequencer_knows_its_floors_as_the_workers_role_which_sees_no_other_session(conns):
    """The workers' pool runs as ledger_worker (SET ROLE): pg_stat_activity shows it no other session's transaction
    start, not even one of its own login role's. The floor's read of them (ledger_event_time_floor) is the schema
    owner's, who sees them: the floors are known; a session hidden from it would make them not known (NULL)."""
    conn, other = conns
    tenant = f"w-{uuid.uuid4().hex[:8]}"
    await emit(conn, tenant, "one")
    await conn.execute("SET ROLE ledger_worker")
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND xact_start IS NULL"
                                   " AND state IS NULL", other.get_server_pid()) == 1  # hidden from the role itself
        async with other.transaction():
            await other.fetchval("SELECT 1")  # a transaction in progress while the sequencer runs
            await sequence_until(conn, tenant, "one")
            started = await other.fetchval("SELECT now()")
        floor = await conn.fetchval("SELECT event_time_floor FROM events WHERE tenant_id = $1", tenant)
        assert floor is not None and floor <= started
    finally:
        await conn.execute("RESET ROLE")
