"""ledgerctl cells drain: a third real cell with three tenants, drained onto the two others."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid

import httpx
import pytest

from cli_rig import CellProcess, finished, holding, spawn_async, until
from test_ledgerctl import new_id, run_sql
from test_moves import _assert_tenant_moved, _rows, _spawn_mover, _state_in, _transfer, _wait_for_copy, _world


@pytest.fixture
def third_cell(ctl, stack):
    yield from _extra_cell(ctl, stack)


@pytest.fixture
def fourth_cell(ctl, stack, third_cell):
    yield from _extra_cell(ctl, stack)


def _extra_cell(ctl, stack):
    name = f"cli-d{uuid.uuid4().hex[:4]}"
    cell = CellProcess(name, stack["make_database"](f"cli_cell_drain_{uuid.uuid4().hex[:6]}", migrate_cell=False))
    try:
        cell.wait_ready()
        ctl("cells", "add", name, "--api-url", cell.url, "--database-url", cell.database_url)
        stack["cells"][name] = cell
        yield cell
    finally:
        # Out of placement for good: a tenant created later must not land on a cell that is gone.
        run_sql(stack["cp_url"], "UPDATE cells SET state = 'disabled' WHERE name = $1", name)
        stack["cells"].pop(name, None)
        cell.stop()


def _loads(ctl) -> dict[str, int]:
    return {c["name"]: c["tenants"] for c in ctl.json("cells", "list") if c["state"] == "active"}


def test_drain_moves_every_tenant_off_and_is_resumable(ctl, stack, third_cell):
    name = third_cell.name
    worlds = [_world(ctl, stack, cell=name, postings=3) for _ in range(3)]
    tenants = sorted(w["tenant"] for w in worlds)
    before = {t: _rows(third_cell.database_url, t) for t in tenants}

    # Not confirmed: nothing changes, the cell stays active.
    refused = ctl("cells", "drain", name, input="nope\n", expect=1)
    assert "not confirmed" in refused.stderr and f"move tenant {tenants[0]}" in refused.stderr
    assert {c["name"]: c["state"] for c in ctl.json("cells", "list")}[name] == "active"

    # A mover killed mid-copy leaves a running move off the cell: the drain resumes it first.
    proc = _spawn_mover(stack, "tenants", "move", tenants[1], "--to", "cli-2", "--yes")
    killed = _wait_for_copy(stack, tenants[1], proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    # A move that cannot start (a table the mover does not know) stops the drain, exit 1; the cell is draining.
    run_sql(third_cell.database_url, "CREATE TABLE mystery_rows (tenant_id text NOT NULL)")
    try:
        stopped = ctl.json("cells", "drain", name, "--yes", expect=1)
        assert stopped["code"] == "unknown_tables" and "drain of cell" in stopped["title"]
        assert [m["state"] for m in stopped["details"]["moves_done"]] == []
    finally:
        run_sql(third_cell.database_url, "DROP TABLE mystery_rows")
    assert {c["name"]: c["state"] for c in ctl.json("cells", "list")}[name] == "draining"
    # Draining: no new tenant is placed on it, though it is now the least loaded of all.
    placed = ctl.json("tenants", "create", new_id())
    assert placed["cell"] != name

    # Run again: the killed move is resumed, then the other two move to the least-loaded active cells.
    loads = _loads(ctl)
    loads["cli-2"] += 1  # the resumed move lands there first
    expected = {tenants[1]: "cli-2"}
    for tenant in (tenants[0], tenants[2]):
        target = min(loads, key=lambda c: (loads[c], c))
        loads[target] += 1
        expected[tenant] = target
    plan = ctl("cells", "drain", name, input="nope\n", expect=1).stderr
    assert f"resume move {killed} of tenant {tenants[1]} to cell cli-2" in plan
    for tenant in (tenants[0], tenants[2]):
        assert f"move tenant {tenant} to cell {expected[tenant]}" in plan
    result = ctl.json("cells", "drain", name, "--yes")
    assert result["tenants_left"] == 0 and result["state"] == "draining"
    assert [m["tenant"] for m in result["moves"]] == [tenants[1], tenants[0], tenants[2]]
    assert result["moves"][0]["id"] == killed
    for move in result["moves"]:
        assert move["state"] == "done" and move["verification"]["ok"] and move["freeze_ms"] is not None
        assert move["target"] == expected[move["tenant"]]
    for tenant in tenants:
        target = stack["cells"][expected[tenant]]
        assert ctl.json("tenants", "show", tenant)["cell"] == expected[tenant]
        assert _rows(target.database_url, tenant) == before[tenant]
        assert (_state_in(third_cell.database_url, tenant), _state_in(target.database_url, tenant)) == \
            ("moved_out", "active")
        assert ctl.json("verify", "--tenant", tenant, "--unapplied-age-max-s", "0")["violations"] == []
    assert {c["name"]: c["tenants"] for c in ctl.json("cells", "list")}[name] == 0
    # The effects the worlds queued (these cells run no sweeper) applied now, on their new cells: a stale
    # unapplied effect would breach the other tests' readiness checks.
    for world in worlds:
        run_sql(stack["cells"][expected[world["tenant"]]].database_url,
                "SELECT applied FROM ledger_apply_report($1::uuid[], false)",
                sorted(uuid.UUID(a) for a in world["accounts"]))
    # Nothing left: a further run is a no-op; the pretty output says so.
    assert ctl("cells", "drain", name, "--yes").stdout.strip().endswith("0 tenant(s) moved off, none left")


def test_a_drain_move_back_aborted_leaves_the_cell_it_left_answering_421(ctl, stack, third_cell, fourth_cell):
    """The tenant left cell D for cell E; a drain of E moves it back to D (the least loaded: it holds no tenant) and
    that move is aborted mid-copy: D answers the tenant's key 421 tenant_moved as before, not 401."""
    for cell in ("cli-1", "cli-2"):  # each holds a tenant: D, holding none, is the least loaded
        ctl.json("tenants", "create", new_id(), "--cell", cell)
    world = _world(ctl, stack, cell=third_cell.name, postings=8)
    tenant = world["tenant"]
    assert ctl.json("tenants", "move", tenant, "--to", fourth_cell.name, "--yes")["state"] == "done"
    proc = _spawn_mover(stack, "cells", "drain", fourth_cell.name, "--yes")
    back = _wait_for_copy(stack, tenant, proc)
    assert ctl.json("moves", "show", back)["target"] == third_cell.name
    assert ctl.json("moves", "abort", back, "--yes")["state"] == "aborted"
    assert proc.wait(30) == 1  # the drain stops with its move
    ctl.json("moves", "abort", back, "--yes")
    _assert_tenant_moved(world["http"].get("/api/ledgers"))
    on_e = httpx.Client(base_url=fourth_cell.url, auth=(tenant, world["secret"]), timeout=10)
    assert on_e.post("/api/ledger_transactions", json=_transfer(world["ledger"], world["accounts"], 5)).status_code \
        == 201
    assert _state_in(third_cell.database_url, tenant) == "moved_out"
    assert ctl.json("cells", "undrain", fourth_cell.name)["state"] == "active"
    _apply_queued(stack, world)
    assert ctl.json("verify", "--tenant", tenant, "--unapplied-age-max-s", "0")["violations"] == []
    assert ctl.json("verify", "--cell", third_cell.name, "--unapplied-age-max-s", "0")["violations"] == []


def test_drain_refusals(ctl, stack):
    assert ctl.json("cells", "drain", "cli-nowhere", "--yes", expect=1)["code"] == "unknown_cell"
    cell = stack["cells"]["cli-2"]
    run_sql(stack["cp_url"], "INSERT INTO cells (name, api_url, database_url, state) VALUES ('cli-off', $1, $2, "
            "'disabled') ON CONFLICT DO NOTHING", cell.url, cell.database_url)
    assert ctl.json("cells", "drain", "cli-off", "--yes", expect=1)["code"] == "cell_disabled"


def test_undrain_takes_the_cell_back_and_stops_a_running_drain(ctl, stack, third_cell):
    name = third_cell.name
    worlds = [_world(ctl, stack, cell=name, postings=8) for _ in range(2)]
    tenants = sorted(w["tenant"] for w in worlds)
    # A drain, slowed down (3 rows a batch): undrained while its first move copies.
    proc = _spawn_mover(stack, "cells", "drain", name, "--yes")
    _wait_for_copy(stack, tenants[0], proc)
    assert {c["name"]: c["state"] for c in ctl.json("cells", "list")}[name] == "draining"
    undrained = ctl.json("cells", "undrain", name)
    assert undrained["state"] == "active" and "database_url" not in undrained
    # The drain finishes the move under way, then stops: the other tenant stays.
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["state"] == "active" and result["tenants_left"] == 1, result
    assert [m["tenant"] for m in result["moves"]] == [tenants[0]] and result["moves"][0]["state"] == "done"
    assert ctl.json("tenants", "show", tenants[0])["cell"] != name
    assert ctl.json("tenants", "show", tenants[1])["cell"] == name
    assert _state_in(third_cell.database_url, tenants[1]) == "active"
    assert ctl.json("audit", "--subject", f"cell:{name}", "--limit", "1")[0]["action"] == "cells.undrain"
    # Idempotent; placement takes the cell again (it is now the least loaded of all).
    assert ctl.json("cells", "undrain", name)["state"] == "active"
    loads = {c["name"]: c["tenants"] for c in ctl.json("cells", "list") if c["state"] == "active"}
    if min(loads, key=lambda c: (loads[c], c)) == name:
        assert ctl.json("tenants", "create", new_id())["cell"] == name


def test_undrain_refusals(ctl, stack):
    assert ctl.json("cells", "undrain", "cli-nowhere", expect=1)["code"] == "unknown_cell"
    cell = stack["cells"]["cli-2"]
    run_sql(stack["cp_url"], "INSERT INTO cells (name, api_url, database_url, state) VALUES ('cli-off', $1, $2, "
            "'disabled') ON CONFLICT DO NOTHING", cell.url, cell.database_url)
    assert ctl.json("cells", "undrain", "cli-off", expect=1)["code"] == "cell_disabled"


def _apply_queued(stack, world: dict) -> None:
    """The effects a world queued (these cells run no sweeper) applied on the cell it lives on now."""
    cell = stack["cells"][next(c for c in stack["cells"] if _state_in(stack["cells"][c].database_url,
                                                                      world["tenant"]) == "active")]
    run_sql(cell.database_url, "SELECT applied FROM ledger_apply_report($1::uuid[], false)",
            sorted(uuid.UUID(a) for a in world["accounts"]))


def test_a_drain_does_not_call_a_cell_empty_while_a_move_into_it_runs(ctl, stack, third_cell):
    """A move into the cell is copying when `cells drain` runs: the drain does not report the cell empty (the move
    would land its tenant there after it): it stops, exit 1, naming the move. Once the move is done, the drain run
    again moves that tenant off too."""
    name = third_cell.name
    world = _world(ctl, stack, cell="cli-1", postings=8)
    tenant = world["tenant"]
    proc = _spawn_mover(stack, "tenants", "move", tenant, "--to", name, "--yes")
    move_id = _wait_for_copy(stack, tenant, proc)
    stopped = ctl.json("cells", "drain", name, "--yes", expect=1)
    assert stopped["code"] == "move_into_draining_cell" and move_id in stopped["title"], stopped
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert ctl.json("tenants", "show", tenant)["cell"] == name
    result = ctl.json("cells", "drain", name, "--yes")
    assert (result["tenants_left"], [m["tenant"] for m in result["moves"]]) == (0, [tenant]), result
    assert ctl.json("tenants", "show", tenant)["cell"] != name
    _apply_queued(stack, world)


def test_a_drain_racing_a_move_into_the_cell_does_not_call_it_empty(ctl, stack, third_cell):
    """`tenants move --to C` has planned (C active) and is recording its move (held by a lock another session holds
    on the catalog's moves table) when `cells drain C` runs. Whatever the order, the drain never reports C empty
    while the move then lands its tenant there: it stops (a move into the cell is running), or the move is
    refused."""
    name = third_cell.name
    world = _world(ctl, stack, cell="cli-1", postings=1)
    tenant = world["tenant"]

    async def go():
        async with holding(stack["cp_url"], "LOCK TABLE moves IN SHARE ROW EXCLUSIVE MODE") as held:
            move = await spawn_async(stack, "tenants", "move", tenant, "--to", name, "--yes")
            await until(lambda: held.queued(move, "%INSERT INTO moves%"), "the move to record itself")
            drain = await spawn_async(stack, "cells", "drain", name, "--yes")
            await until(lambda: held.queued(drain, "%UPDATE cells%", may_end=True), "the drain to end or to wait")
            await held.release()
            return await finished(move), await finished(drain)

    (move_rc, moved), (drain_rc, drained) = asyncio.run(go())
    where = ctl.json("tenants", "show", tenant)["cell"]
    if drain_rc == 0:
        assert drained["tenants_left"] == 0
        assert where != name, "the drain called the cell empty, then the move landed its tenant there"
        assert (move_rc, moved["code"]) == (1, "cell_not_active"), moved
    else:
        assert (drain_rc, drained["code"]) == (1, "move_into_draining_cell"), drained
        assert move_rc == 0, moved
        assert ctl.json("cells", "drain", name, "--yes")["tenants_left"] == 0
        assert ctl.json("tenants", "show", tenant)["cell"] != name
    _apply_queued(stack, world)


def test_a_drain_goes_on_past_a_tenant_deleted_while_its_move_was_being_recorded(ctl, stack, third_cell):
    """`cells drain C` has planned the move of C's one tenant, an empty one, and is held as it records it (another
    session holds the active cells' catalog rows, which the move locks first); meanwhile `tenants delete` removes the
    tenant. Nothing is left to move off: the drain ends, C draining and empty, no move recorded."""
    name, tenant_id = third_cell.name, new_id()
    ctl("tenants", "create", tenant_id, "--cell", name)

    async def go():
        async with holding(stack["cp_url"], "SELECT 1 FROM cells WHERE state = 'active' AND name <> $1 FOR UPDATE",
                           name) as held:
            drain = await spawn_async(stack, "cells", "drain", name, "--yes")
            await until(lambda: held.queued(drain, "%FROM cells%FOR SHARE%"), "the drain to record the tenant's move")
            deleted = await finished(await spawn_async(stack, "tenants", "delete", tenant_id, "--yes"))
            await held.release()
            return deleted, await finished(drain)

    (delete_rc, deleted), (drain_rc, result) = asyncio.run(go())
    assert delete_rc == 0, deleted
    assert drain_rc == 0, result
    assert (result["state"], result["tenants_left"], result["moves"]) == ("draining", 0, []), result
    assert ctl.json("moves", "list", "--tenant", tenant_id) == []
    assert ctl.json("tenants", "list", "--cell", name) == []
