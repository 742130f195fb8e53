"""A tenant moved between two real cells while clients keep posting to it through a real router, some postings
applied at once (an exact answer asked for) and the others queued for the workers (hybrid mode; here the cells'
own sweepers apply them): nothing is lost or doubled, the freeze is short and held by the router, the moved
balances equal what the target recomputes from entries, another tenant of the source cell never notices; a router
that missed a move reads every acknowledged posting while the tenant moves back."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid

import asyncpg
import httpx
import pytest

from control_plane import operations
from control_plane.catalog import connect, migrate_catalog
from control_plane.devstack import free_port
from control_plane.settings import ControlPlaneSettings
from router.server import RouterServer
from router.settings import RouterSettings


class Served:
    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="on",
                                                    log_level="warning", access_log=False))

    async def start(self) -> "Served":
        self.task = asyncio.create_task(self.server._serve())
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and not self.task.done(), "cell did not start"
            await asyncio.sleep(0.02)
        return self

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


@pytest.fixture(scope="module")
async def world(make_database, redis_url):
    from cell.api.app import create_app
    from cell.settings import load_settings

    suffix = uuid.uuid4().hex[:6]
    cp_url = make_database(f"cp_moves_{suffix}", migrate_cell=False)
    settings = ControlPlaneSettings(database_url=cp_url, redis_url=redis_url, actor="tests")
    conn = await connect(cp_url)
    served, cells = [], {}
    try:
        await migrate_catalog(conn)
        for name in ("mv-1", "mv-2"):
            db_url = make_database(f"{name.replace('-', '_')}_{suffix}")
            cell = await Served(create_app(load_settings(
                ("UNUSED_PREFIX_",), name=name, database_url=db_url, posting_mode="hybrid", db_pool_min=1,
                db_pool_max=6, api_key_cache_ttl_s=0.5, sweep_after_s=0.5, sweep_interval_s=0.5))).start()
            served.append(cell)
            cells[name] = db_url
            await operations.add_cell(conn, settings, name, cell.url, db_url)
        router = RouterServer(RouterSettings(control_plane_database_url=cp_url, redis_url=redis_url,
                                             reload_interval_s=0.5, port=free_port(), metrics_port=free_port()))
        await router.start()
        yield {"conn": conn, "settings": settings, "cells": cells, "router": f"http://127.0.0.1:{router.port}",
               "env": {"CONTROL_PLANE_DATABASE_URL": cp_url, "CONTROL_PLANE_REDIS_URL": redis_url}}
        await router.stop()
    finally:
        for cell in served:
            await cell.stop()
        await conn.close()


async def _tenant(world, cell: str) -> tuple[httpx.AsyncClient, str, str, list[str]]:
    tenant_id = f"ld-{uuid.uuid4().hex[:8]}"
    await operations.create_tenant(world["conn"], world["settings"], tenant_id, "load", cell)
    _, secret = await operations.create_key(world["conn"], world["settings"], tenant_id)
    http = httpx.AsyncClient(base_url=world["router"], auth=(tenant_id, secret), timeout=10)
    deadline = time.monotonic() + 10
    while (await http.get("/api/ledgers")).status_code != 200:
        assert time.monotonic() < deadline, "the router does not route the new tenant"
        await asyncio.sleep(0.05)
    ledger = (await http.post("/api/ledgers", json={"name": "main"})).json()["id"]
    accounts = []
    for name, normal in (("cash", "debit"), ("revenue", "credit")):
        r = await http.post("/api/ledger_accounts", json={"name": name, "ledger_id": ledger,
                                                           "normal_balance": normal, "currency": "USD"})
        accounts.append(r.json()["id"])
    return http, tenant_id, ledger, accounts


# What a writer posts at most a second: a tenant's steady load, not as fast as the machine allows. Closed-loop
# writers in the test process outran the mover (another process, copying in batches of 100) whenever the session's
# background fuzz took the cores, and a move under a tenant writing faster than it copies never converges (it is
# refused the freeze: test_a_tenant_writing_faster_than_the_rounds_shrink_...).
WRITES_PER_S = 40


class Writer:
    """Posts transfers one after the other with an Idempotency-Key each, at most WRITES_PER_S a second, retrying a
    key until it is answered 201 (503, 421, 5xx and timeouts are retried with the same key). Records every
    acknowledged posting."""

    def __init__(self, http: httpx.AsyncClient, ledger: str, accounts: list[str], prefix: str = "w",
                 applied_now: bool = False, locked: bool = False, per_s: float = WRITES_PER_S) -> None:
        self.http, self.ledger, self.accounts = http, ledger, accounts
        # applied_now: the entries ask for their resulting balances, locked: the debit entry carries a balance lock
        # (available >= 0, always true here); either way the posting applies them in its own transaction; otherwise
        # (hybrid mode) their effects are queued for the workers.
        self.prefix, self.applied_now, self.locked, self.per_s = prefix, applied_now, locked, per_s
        self.acked: dict[str, tuple[str, int]] = {}   # key -> (transaction id, amount)
        self.retries: dict[int, int] = {}
        self.refusals: list[tuple[int, str | None]] = []  # every answer but a 201: (status, its problem code)
        self.latencies: list[float] = []
        self.ack_times: list[float] = []
        self.stop = False

    async def run(self) -> None:
        n = 0
        next_at = time.monotonic()
        while not self.stop:
            next_at = max(next_at, time.monotonic()) + 1 / self.per_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))  # the pace, not a wait for a condition
            n += 1
            key, amount = f"{self.prefix}-{n}", n % 97 + 1
            body = {"ledger_id": self.ledger, "status": "posted", "ledger_entries": [
                {"ledger_account_id": self.accounts[0], "direction": "debit", "amount": amount},
                {"ledger_account_id": self.accounts[1], "direction": "credit", "amount": amount}]}
            if self.applied_now:
                for entry in body["ledger_entries"]:
                    entry["show_resulting_ledger_account_balances"] = True
            if self.locked:
                body["ledger_entries"][0]["available_balance_amount"] = {"gte": 0}
            deadline = time.monotonic() + 30
            while True:
                started = time.monotonic()
                try:
                    r = await self.http.post("/api/ledger_transactions", json=body, headers={"Idempotency-Key": key})
                    status = r.status_code
                except httpx.TransportError:
                    status = 0
                if status == 201:
                    self.latencies.append(time.monotonic() - started)
                    self.ack_times.append(time.monotonic())
                    self.acked[key] = (r.json()["id"], amount)
                    break
                self.refusals.append((status, _problem_code(r) if status else None))
                assert status in (0, 409, 421, 502, 503, 504), (status, r.text)
                self.retries[status] = self.retries.get(status, 0) + 1
                assert time.monotonic() < deadline, f"posting {key} never acknowledged"
                await asyncio.sleep(0.01)

    async def until_acked(self, n: int, deadline: float, tasks: list[asyncio.Task]) -> None:
        """Wait for n acknowledged postings, before the deadline and while none of the test's tasks has ended."""
        while len(self.acked) < n:
            assert time.monotonic() < deadline and not any(t.done() for t in tasks)
            await asyncio.sleep(0.05)

    def largest_gap_s(self, since: float) -> float:
        times = [t for t in self.ack_times if t >= since]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def _problem_code(r: httpx.Response) -> str | None:
    try:
        return r.json().get("code")
    except ValueError:
        return None


async def _db(url: str, query: str, *args):
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def _ledgerctl(world, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`ledgerctl --format json ARGS` run as an operator runs it (a process of its own): its exit code, stdout and
    stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from control_plane.cli import main; main()", "--format", "json", *args,
        env={**os.environ, **world["env"], "CONTROL_PLANE_MOVE_BATCH_ROWS": "100", **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    reading = asyncio.ensure_future(proc.communicate())
    done, _ = await asyncio.wait([reading], timeout=120)
    if not done:  # say where the mover was: its last progress lines
        proc.kill()
        _, err = await reading
        pytest.fail("the move did not end in 120 s; its last progress:\n" + "\n".join(err.decode().splitlines()[-15:]))
    out, err = reading.result()
    return proc.returncode, out.decode(), err.decode()


async def _move_by_cli(world, tenant: str, to: str = "mv-2") -> dict:
    """`ledgerctl tenants move TENANT --to CELL --yes`: its JSON result."""
    code, out, err = await _ledgerctl(world, "tenants", "move", tenant, "--to", to, "--yes")
    assert code == 0, err
    return json.loads(out)


async def _categories(http: httpx.AsyncClient, ledger: str, accounts: list[str]) -> str:
    """A category with the first account directly and the second through a nested category (added, removed
    and added again: a removed membership is a row too)."""
    ids = []
    for name in ("books", "income"):
        r = await http.post("/api/ledger_account_categories", json={
            "name": name, "ledger_id": ledger, "normal_balance": "debit", "currency": "USD"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    books, income = ids
    for method, path in (("PUT", f"{books}/ledger_accounts/{accounts[0]}"),
                         ("PUT", f"{books}/ledger_account_categories/{income}"),
                         ("PUT", f"{income}/ledger_accounts/{accounts[1]}"),
                         ("DELETE", f"{income}/ledger_accounts/{accounts[1]}"),
                         ("PUT", f"{income}/ledger_accounts/{accounts[1]}")):
        r = await http.request(method, f"/api/ledger_account_categories/{path}")
        assert r.status_code == 204, r.text
    return books


async def test_move_under_load_loses_and_doubles_nothing(world):
    http, tenant, ledger, accounts = await _tenant(world, "mv-1")
    other_http, other, other_ledger, other_accounts = await _tenant(world, "mv-1")
    category = await _categories(http, ledger, accounts)
    moving, neighbour = Writer(http, ledger, accounts), Writer(other_http, other_ledger, other_accounts)
    exact = Writer(http, ledger, accounts, prefix="x", applied_now=True)
    tasks = [asyncio.create_task(w.run()) for w in (moving, exact, neighbour)]
    try:
        # Some history first, then the move while both keep writing.
        await moving.until_acked(150, time.monotonic() + 30, tasks)
        started = time.monotonic()
        result = await _move_by_cli(world, tenant)
        moved_at = time.monotonic()
        # Keep writing after the move until 30 more postings are acknowledged (on the target).
        await moving.until_acked(len(moving.acked) + 30, moved_at + 30, tasks)
    finally:
        moving.stop = exact.stop = neighbour.stop = True
        await asyncio.gather(*tasks)
    assert result["state"] == "done" and result["verification"]["ok"], result
    entries = result["verification"]["rows"]["ledger_entries"]
    print(f"\nmove of {entries} entries: {result['rounds']} rounds, {result['final_catch_up_rows']} rows in the "
          f"freeze, freeze window {result['freeze_ms']} ms, steps "
          f"{[(s['step'], s['ms']) for s in result['steps']]}, client retries {moving.retries} {exact.retries}, "
          f"largest gap between acknowledged writes {moving.largest_gap_s(started) * 1000:.0f} ms, neighbour's slowest write "
          f"{max(neighbour.latencies) * 1000:.0f} ms")
    assert result["freeze_ms"] < 5000
    target, source = world["cells"]["mv-2"], world["cells"]["mv-1"]
    # Every acknowledged posting exists exactly once on the target; nothing else does.
    rows = await _db(target, "SELECT id, (SELECT sum(amount) FROM ledger_entries e WHERE e.transaction_id = t.id "
                             "AND e.direction = 'debit') AS amount FROM ledger_transactions t WHERE tenant_id = $1",
                     tenant)
    on_target = {r["id"]: r["amount"] for r in rows}
    acked = {**moving.acked, **exact.acked}
    assert len(on_target) == len(rows) == len(acked) and exact.acked and moving.acked
    assert {str(i): a for i, a in on_target.items()} == {i: a for i, a in acked.values()}
    # The queued effects (some moved unapplied) are applied on the target by its own sweeper.
    deadline = time.monotonic() + 30
    while (await _db(target, "SELECT count(*) AS n FROM balance_effects WHERE tenant_id = $1 AND applied_at IS NULL",
                     tenant))[0]["n"]:
        assert time.monotonic() < deadline, "the target does not apply the tenant's queued effects"
        await asyncio.sleep(0.2)
    # The balances are the model's, through the router (now on the target), and what the target recomputes
    # from its entries.
    model = sum(a for _, a in acked.values())
    cash = (await http.get(f"/api/ledger_accounts/{accounts[0]}")).json()["balances"]
    assert cash["posted_balance"]["debits"] == model
    # A category holding both accounts (one through a nested category) moved with its closure.
    books = (await http.get(f"/api/ledger_account_categories/{category}")).json()["balances"]["posted_balance"]
    assert (books["debits"], books["credits"]) == (model, model)
    assert (await operations.verify(world["conn"], tenant_id=tenant))["violations"] == []
    # Both cells verify; the source says moved_out, the target active.
    for cell in ("mv-1", "mv-2"):
        assert await operations.verify(world["conn"], cell_name=cell) is not None
    assert (await _db(source, "SELECT state FROM tenants WHERE id = $1", tenant))[0]["state"] == "moved_out"
    assert (await _db(target, "SELECT state FROM tenants WHERE id = $1", tenant))[0]["state"] == "active"
    # The neighbour never saw the freeze: not one retry.
    assert neighbour.retries == {} and len(neighbour.acked) > 0
    # A retry of a pre-move request with its key replays the first answer on the target.
    first_key = "w-1"
    replay = await http.post("/api/ledger_transactions", headers={"Idempotency-Key": first_key}, json={
        "ledger_id": ledger, "status": "posted", "ledger_entries": [
            {"ledger_account_id": accounts[0], "direction": "debit", "amount": 2},
            {"ledger_account_id": accounts[1], "direction": "credit", "amount": 2}]})
    assert replay.status_code == 201 and replay.json()["id"] == moving.acked[first_key][0]
    await http.aclose()
    await other_http.aclose()


async def test_a_tenant_writing_faster_than_the_rounds_shrink_is_not_frozen_and_moves_once_it_slows(world):
    """The freeze begins only after a catch-up round its final round can follow within CONTROL_PLANE_MOVE_FREEZE_S_MAX
    at MOVE_ROWS_PER_S_ESTIMATE (here 1 s at 1 row/s: a round during which anything was written never fits). While
    the tenant writes, the rounds go on for MOVE_CATCH_UP_S_MAX, then the move stops, `move_not_converging`: nothing
    was frozen (not one write held or refused), the tenant is active on its source, the move resumable. Once the
    writes stop, `moves resume` finishes it with every acknowledged posting on the target."""
    http, tenant, ledger, accounts = await _tenant(world, "mv-1")
    writers = [Writer(http, ledger, accounts), Writer(http, ledger, accounts, prefix="x", applied_now=True)]
    tasks = [asyncio.create_task(w.run()) for w in writers]
    slow = {"CONTROL_PLANE_MOVE_ROWS_PER_S_ESTIMATE": "1", "CONTROL_PLANE_MOVE_FREEZE_S_MAX": "1"}
    try:
        await writers[0].until_acked(50, time.monotonic() + 30, tasks)
        code, _, err = await _ledgerctl(world, "tenants", "move", tenant, "--to", "mv-2", "--yes",
                                        env={**slow, "CONTROL_PLANE_MOVE_CATCH_UP_S_MAX": "2"})
        await writers[0].until_acked(len(writers[0].acked) + 20, time.monotonic() + 30, tasks)  # still writing
    finally:
        for w in writers:
            w.stop = True
        await asyncio.gather(*tasks)
    lines = err.splitlines()
    problem = json.loads(lines[-1])
    assert code == 1 and problem["code"] == "move_not_converging", err
    assert any(json.loads(line)["progress"]["event"] == "waiting" for line in lines if line.startswith('{"progress"'))
    assert problem["details"]["state"] == "running" and problem["details"]["step"] == "catch_up"
    assert problem["details"]["freeze_ms"] is None
    assert all(w.retries == {} for w in writers), [w.retries for w in writers]  # no write was ever held
    source, target = world["cells"]["mv-1"], world["cells"]["mv-2"]
    assert (await _db(source, "SELECT state FROM tenants WHERE id = $1", tenant))[0]["state"] == "active"

    code, out, err = await _ledgerctl(world, "moves", "resume", problem["details"]["id"],
                                      env={**slow, "CONTROL_PLANE_MOVE_CATCH_UP_S_MAX": "60"})
    assert code == 0, err
    result = json.loads(out)
    assert result["state"] == "done" and result["verification"]["ok"], result
    rows = await _db(target, "SELECT id FROM ledger_transactions WHERE tenant_id = $1", tenant)
    acked = {i for w in writers for i, _ in w.acked.values()}
    assert {str(r["id"]) for r in rows} == acked and len(rows) == len(acked)
    await http.aclose()


@pytest.mark.parametrize("mover_told", [True, False], ids=["processes_unrecorded_mover_told_the_ttl",
                                                           "processes_recorded_mover_left_at_its_default"])
async def test_the_cell_a_tenant_left_serves_no_read_once_its_new_cell_takes_its_writes(world, mover_told):
    """A router that has not learnt of a move yet sends the tenant's requests to the cell it left: that cell serves
    its reads (from its books, frozen) until it answers 421, but never once the tenant writes on its new cell. A cell
    process remembers a checked key for CELL_API_KEY_CACHE_TTL_S (2 s for the two mv-1 processes here): one that
    checked the key just before the move, or one that checked it in the freeze, answers 421 the moment the tenant is
    active on mv-2 (the mover marks the tenant leaving, so that no key of it is remembered from then on, and freezes
    it once the keys remembered before have expired; the second did not remember it). That wait is not in the freeze:
    the tenant writes meanwhile. The mover waits as long as the source's processes remember a key (each records its
    TTL in its cell's database as it starts), whether or not its own CONTROL_PLANE_CELLS_API_KEY_CACHE_TTL_S is
    raised to it: left at its default (0.5 s) it is only the least it waits. Processes that started before their
    cell had migration 0231 recorded nothing: then the mover waits what it was told."""
    import msgspec

    from cell.api.app import create_app
    from cell.settings import load_settings
    from control_plane.moves import plan_move, run_move, start_move

    ttl_s = 2.0
    http, tenant, ledger, accounts = await _tenant(world, "mv-1")
    cash = f"/api/ledger_accounts/{accounts[0]}"
    source = world["cells"]["mv-1"]
    processes = [await Served(create_app(load_settings(
        ("UNUSED_PREFIX_",), name="mv-1", database_url=source, posting_mode="hybrid", db_pool_min=1, db_pool_max=2,
        api_key_cache_ttl_s=ttl_s, sweep_interval_s=0))).start() for _ in range(2)]
    # As a stale router forwards the tenant's reads to mv-1 (its queued effects folded in).
    before, during = [httpx.AsyncClient(base_url=p.url, auth=http.auth, timeout=10,
                                        params={"balances[include_unapplied]": "true"}) for p in processes]
    transfer = {"ledger_id": ledger, "status": "posted", "ledger_entries": [
        {"ledger_account_id": accounts[0], "direction": "debit", "amount": 5},
        {"ledger_account_id": accounts[1], "direction": "credit", "amount": 5}]}
    tasks: dict[str, asyncio.Task] = {}

    async def write_then_read() -> tuple[httpx.Response, list[httpx.Response]]:
        written = await http.post("/api/ledger_transactions", json=transfer)  # on mv-2, the moment it is active
        return written, [await before.get(cash), await during.get(cash)]

    def progress(event: dict) -> None:
        if (event.get("step"), event.get("event")) == ("flip", "step"):  # the tenant frozen on mv-1
            tasks["frozen"] = asyncio.get_running_loop().create_task(during.get(cash))
        elif event.get("event") == "unfrozen":  # the tenant active on mv-2
            tasks["after"] = asyncio.get_running_loop().create_task(write_then_read())

    try:
        if mover_told:  # as if mv-1's processes had started before its migration 0231
            await _db(source, "DELETE FROM api_key_cache_ttl")
        assert (await http.post("/api/ledger_transactions", json=transfer)).status_code == 201
        assert (await before.get(cash)).status_code == 200  # the key checked there just before the move
        settings = msgspec.structs.replace(world["settings"], cells_api_key_cache_ttl_s=ttl_s) if mover_told \
            else world["settings"]
        move = await start_move(world["conn"], settings, await plan_move(world["conn"], settings, tenant, "mv-2"))
        result = await run_move(world["conn"], settings, move["id"], progress)
        assert result["state"] == "done" and result["freeze_ms"] < ttl_s * 1000, result
        frozen = await tasks["frozen"]
        # Sent as the flip began, but the mover does not wait for it: on a loaded machine it may reach mv-1 only
        # after the flip, and then it is the 421 (never another answer, nor books that are not the frozen ones).
        if frozen.status_code == 200:
            assert frozen.json()["balances"]["posted_balance"]["debits"] == 5, frozen.text
        else:
            assert (frozen.status_code, frozen.json().get("code")) == (421, "tenant_moved"), frozen.text
        written, late = await tasks["after"]
        assert written.status_code == 201, written.text
        assert [(r.status_code, r.json().get("code")) for r in late] == [(421, "tenant_moved")] * 2, \
            [r.text for r in late]
    finally:
        for client in (http, before, during):
            await client.aclose()
        for p in processes:
            await p.stop()
        # mv-1's processes remember keys for 0.5 s again: as its operator would, the record (if any) follows, and the
        # later moves off mv-1 wait that.
        await _db(source, "UPDATE api_key_cache_ttl SET ttl_s = 0.5")


class Reader:
    """Reads an account's posted balance (its queued effects folded in: balances[include_unapplied]) through one
    router, at most `per_s` a second, and keeps each read's floor: what the writers had been answered 201 for before
    it began (a debit-normal account's posted debits only grow here)."""

    def __init__(self, http: httpx.AsyncClient, account: str, writers: list[Writer], per_s: float = 25) -> None:
        self.http, self.account, self.writers, self.per_s = http, account, writers, per_s
        self.reads: list[tuple[float, int, int, int | None]] = []  # (started, floor, status, posted debits)
        self.stop = False

    def floor(self) -> int:
        return sum(a for w in self.writers for _, a in w.acked.values())

    async def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop:
            next_at = max(next_at, time.monotonic()) + 1 / self.per_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))  # the pace, not a wait for a condition
            started, floor = time.monotonic(), self.floor()
            try:
                r = await self.http.get(f"/api/ledger_accounts/{self.account}",
                                        params={"balances[include_unapplied]": "true"})
                status = r.status_code
            except httpx.TransportError:
                status = 0
            debits = r.json()["balances"]["posted_balance"]["debits"] if status == 200 else None
            self.reads.append((started, floor, status, debits))

    def below(self) -> list[tuple[float, int, int, int | None]]:
        """The reads that did not show every posting acknowledged before they began (or were not answered 200)."""
        return [read for read in self.reads if read[2] != 200 or read[3] < read[1]]


def _router_series(text: str) -> dict[tuple[str, tuple], float]:
    """A router's /metrics, as (sample name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_a_router_that_missed_a_move_reads_every_acknowledged_write_while_the_tenant_moves_back(world):
    """A tenant moved from mv-1 to mv-2 and back, under load, while one of two routers never learns of the first move
    (no pub/sub, no periodic reload: only a 421 makes it reload its map), so that it still routes the tenant to mv-1
    when the move back starts copying it there. Clients post (queued, applied at once with resulting balances, under
    a balance lock) and read the cash account's balance through both routers. Every read shows every posting
    acknowledged before it began: the stale router never reads the move back's partial copy on mv-1 (answered 421 there
    until the flip, it follows the route to mv-2), nor mv-2's books once the tenant left it. The only refusals are the
    freezes' 503 tenant_frozen, a few; every acknowledged posting is on mv-1 once, its balances its entries'."""
    http, tenant, ledger, accounts = await _tenant(world, "mv-1")
    cash = accounts[0]
    stale_router = RouterServer(RouterSettings(
        control_plane_database_url=world["settings"].database_url, redis_url="", reload_interval_s=3600,
        port=free_port(), metrics_port=free_port()))
    await stale_router.start()  # its map: the tenant on mv-1, for as long as no cell answers it 421
    try:
        stale = httpx.AsyncClient(base_url=f"http://127.0.0.1:{stale_router.port}", auth=http.auth, timeout=10)
        assert (await stale.get(f"/api/ledger_accounts/{cash}")).status_code == 200
        writers = [Writer(http, ledger, accounts, prefix="q", per_s=15),
                   Writer(http, ledger, accounts, prefix="r", applied_now=True, per_s=10),
                   Writer(http, ledger, accounts, prefix="l", locked=True, per_s=10)]
        stale_writer = Writer(stale, ledger, accounts, prefix="s", per_s=10)
        everyone = [*writers, stale_writer]
        current_reader, stale_reader = Reader(http, cash, everyone), Reader(stale, cash, everyone)
        tasks = [asyncio.create_task(c.run()) for c in (*writers, current_reader)]
        source = world["cells"]["mv-1"]
        slow = {"CONTROL_PLANE_MOVE_BATCH_ROWS": "40", "CONTROL_PLANE_MOVE_BATCH_PAUSE_S": "0.03"}
        try:
            await writers[0].until_acked(30, time.monotonic() + 30, tasks)
            there = await _move_by_cli(world, tenant)
            assert there["state"] == "done", there
            back = asyncio.create_task(_ledgerctl(world, "tenants", "move", tenant, "--to", "mv-1", "--yes", env=slow))
            # The stale router's clients start once the move back is copying the tenant to mv-1.
            deadline = time.monotonic() + 30
            while (await _db(source, "SELECT state FROM tenants WHERE id = $1", tenant))[0]["state"] == "moved_out":
                assert time.monotonic() < deadline and not back.done(), "the move back does not start copying"
                await asyncio.sleep(0.02)
            copying_at = time.monotonic()
            tasks += [asyncio.create_task(c.run()) for c in (stale_writer, stale_reader)]
            code, out, err = await back
            back_at = time.monotonic()
            assert code == 0, err
            again = json.loads(out)
            # Writing and reading on after it, through both routers.
            await stale_writer.until_acked(len(stale_writer.acked) + 10, time.monotonic() + 30, tasks)
            metrics = _router_series((await stale.get(f"http://127.0.0.1:{stale_router.metrics_port}/metrics")).text)
        finally:
            for c in (*everyone, current_reader, stale_reader):
                c.stop = True
            await asyncio.gather(*tasks)
        reads = current_reader.reads + stale_reader.reads
        during = [read for read in stale_reader.reads if read[0] < back_at]
        refusals = [r for w in everyone for r in w.refusals]
        shown = ("router_requests_total", "router_route_reloads_total")
        print(f"\nmoves: there {there['freeze_ms']} ms frozen, back {again['freeze_ms']} ms frozen, copying for "
              f"{back_at - copying_at:.1f} s; reads {len(current_reader.reads)} current, {len(stale_reader.reads)} "
              f"stale ({len(during)} during the move back); refusals {refusals}; stale router "
              f"{ {k: v for k, v in metrics.items() if k[0] in shown} }")
        # (1) Read-your-writes across routers, (4) the stale router's reads included.
        below = {name: [(f"{started - back_at:+.3f} s from the move back's end", floor, status, debits)
                        for started, floor, status, debits in reader.below()]
                 for name, reader in (("current", current_reader), ("stale", stale_reader))}
        assert below == {"current": [], "stale": []}, below
        assert len(during) >= 5 and len(reads) >= 50
        # (4) It was answered 421 on mv-1 while the move back copied there, reloaded its map and read on mv-2.
        assert metrics[("router_route_reloads_total", (("trigger", "misdirected"),))] >= 1
        assert metrics.get(("router_requests_total", (("cell", "mv-2"), ("status", "200")))), metrics
        # (3) No 5xx but a freeze's 503 tenant_frozen (held by the router, then retried by the client), a few a freeze.
        assert all(r == (503, "tenant_frozen") for r in refusals), refusals
        assert all(len(w.refusals) <= 6 for w in everyone), refusals
        assert again["state"] == "done" and again["verification"]["ok"], again
        assert there["freeze_ms"] < 5000 and again["freeze_ms"] < 5000
        # (2) Every acknowledged posting exists once, on mv-1; its balances are its entries'; the tenant verifies.
        rows = await _db(source, "SELECT id, (SELECT sum(amount) FROM ledger_entries e WHERE e.transaction_id = t.id "
                                 "AND e.direction = 'debit') AS amount FROM ledger_transactions t WHERE tenant_id = $1",
                         tenant)
        acked = {i: a for w in everyone for i, a in w.acked.values()}
        assert len(acked) == sum(len(w.acked) for w in everyone) and stale_writer.acked
        assert {str(r["id"]): r["amount"] for r in rows} == acked
        model = sum(acked.values())
        for via in (http, stale):
            answer = await via.get(f"/api/ledger_accounts/{cash}", params={"balances[include_unapplied]": "true"})
            assert answer.json()["balances"]["posted_balance"]["debits"] == model
        deadline = time.monotonic() + 30
        while (await _db(source, "SELECT count(*) AS n FROM balance_effects WHERE tenant_id = $1 "
                                 "AND applied_at IS NULL", tenant))[0]["n"]:
            assert time.monotonic() < deadline, "mv-1 does not apply the tenant's queued effects"
            await asyncio.sleep(0.1)
        assert (await http.get(f"/api/ledger_accounts/{cash}")).json()["balances"]["posted_balance"]["debits"] == model
        assert (await operations.verify(world["conn"], tenant_id=tenant))["violations"] == []
        await http.aclose()
        await stale.aclose()
    finally:
        await stale_router.stop()


async def test_a_write_held_by_a_router_that_missed_a_move_follows_the_route_again_when_the_move_back_flips(world):
    """A router that missed a move (no pub/sub, no periodic reload) forwards a write to the cell the tenant left while
    a move back is copying it there: answered 421, it reloads its map and retries on the cell the tenant is frozen on,
    and holds the write while it is frozen; when the move back flips the route, that cell answers 421 too: the router
    reloads its map again and the write is acknowledged on the cell the tenant is back on. A client never gets a 421."""
    import msgspec

    from control_plane.moves import plan_move, run_move, start_move

    http, tenant, ledger, accounts = await _tenant(world, "mv-1")
    conn, settings = world["conn"], world["settings"]
    stale_router = RouterServer(RouterSettings(
        control_plane_database_url=settings.database_url, redis_url="", reload_interval_s=3600, frozen_hold_s=30,
        port=free_port(), metrics_port=free_port()))
    await stale_router.start()  # its map: the tenant on mv-1, for as long as no cell answers it 421
    stale = httpx.AsyncClient(base_url=f"http://127.0.0.1:{stale_router.port}", auth=http.auth, timeout=60)

    async def misdirected() -> float:
        text = (await stale.get(f"http://127.0.0.1:{stale_router.metrics_port}/metrics")).text
        return _router_series(text).get(("router_route_reloads_total", (("trigger", "misdirected"),)), 0.0)

    try:
        assert (await stale.get("/api/ledgers")).status_code == 200
        move = await start_move(conn, settings, await plan_move(conn, settings, tenant, "mv-2"))
        assert (await run_move(conn, settings, move["id"]))["state"] == "done"
        # The move back, its mover stopped before the flip: the tenant frozen on mv-2, arriving on mv-1.
        paused = msgspec.structs.replace(settings, move_pause_before="flip")
        back = await start_move(conn, paused, await plan_move(conn, paused, tenant, "mv-1"))
        mover_conn = await connect(settings.database_url)
        mover = asyncio.create_task(run_move(mover_conn, paused, back["id"]))
        deadline = time.monotonic() + 30
        while (await _db(settings.database_url, "SELECT watermarks ->> 'paused_before' AS paused FROM moves "
                         "WHERE id = $1", back["id"]))[0]["paused"] != "flip":
            assert time.monotonic() < deadline and not mover.done(), "the move back does not reach its flip"
            await asyncio.sleep(0.05)
        mover.cancel()
        await asyncio.gather(mover, return_exceptions=True)
        await mover_conn.close()
        write = asyncio.create_task(stale.post("/api/ledger_transactions", headers={"Idempotency-Key": "held"}, json={
            "ledger_id": ledger, "status": "posted", "ledger_entries": [
                {"ledger_account_id": accounts[0], "direction": "debit", "amount": 7},
                {"ledger_account_id": accounts[1], "direction": "credit", "amount": 7}]}))
        deadline = time.monotonic() + 10
        while await misdirected() < 1:  # answered 421 on mv-1, the router routes it to mv-2 now, held there
            assert time.monotonic() < deadline and not write.done(), "the router did not follow mv-1's 421"
            await asyncio.sleep(0.02)
        assert (await run_move(conn, settings, back["id"]))["state"] == "done"  # resumed: the flip, the unfreeze
        written = await write
        assert written.status_code == 201, written.text
        source = world["cells"]["mv-1"]
        assert [r["id"] for r in await _db(source, "SELECT id FROM ledger_transactions WHERE tenant_id = $1",
                                           tenant)] == [uuid.UUID(written.json()["id"])]
        assert await misdirected() == 2
    finally:
        await http.aclose()
        await stale.aclose()
        await stale_router.stop()
