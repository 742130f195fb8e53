"""A mover killed (SIGKILL) at the pre-verification, inside the freeze (before the final catch-up, or before its
verification and left dead past the freeze's lease), and at the flip:
`moves resume` finishes the move and `moves abort` (before the flip) undoes it; nothing is lost, and the tenant
is writable again on exactly one cell. The mover is stopped at a step by CONTROL_PLANE_MOVE_PAUSE_BEFORE (the
fault drill setting), then killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time

import asyncpg
import httpx
import pytest

from cli_rig import Ledgerctl, finished, spawn, spawn_async, until, wait_until
from test_ledgerctl import run_sql
from test_moves import _rows, _state_in, _transfer, _world


def _spawn_paused(stack, tenant: str, step: str, **settings: str) -> tuple[subprocess.Popen, str]:
    """A mover of `tenant` to cli-2 that stops before `step` (with more CONTROL_PLANE_ `settings`); (its process, the
    move's id) once it waits there."""
    proc = spawn(stack, "tenants", "move", tenant, "--to", "cli-2", "--yes", move_pause_before=step, **settings)

    def paused() -> str | None:
        assert proc.poll() is None, proc.stderr.read()
        rows = run_sql(stack["cp_url"], "SELECT id, step, watermarks FROM moves WHERE tenant_id = $1", tenant)
        if rows and rows[0]["step"] == step and json.loads(rows[0]["watermarks"]).get("paused_before") == step:
            return str(rows[0]["id"])
        return None

    return proc, wait_until(paused, f"the mover to reach {step}")


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _post(stack, cell: str, w: dict, amount: int = 3) -> int:
    with httpx.Client(base_url=stack["cells"][cell].url, auth=(w["tenant"], w["secret"]), timeout=10) as http:
        return http.post("/api/ledger_transactions", json=_transfer(w["ledger"], w["accounts"], amount)).status_code


def _writable_on(stack, w: dict) -> list[str]:
    """The cells that take a posting of the tenant now (the source refuses a moved-out tenant with 421, the
    target one arriving with 421, and one it does not hold with 401, a frozen one with 503)."""
    deadline = time.monotonic() + 10
    while True:
        writable = [cell for cell in ("cli-1", "cli-2") if _post(stack, cell, w) == 201]
        if writable or time.monotonic() > deadline:
            return writable
        time.sleep(0.1)  # the cells' key caches (0.5 s) may still hold the key


# The steps a mover is killed before, and the tenant's state on its source while it lies dead there (on its target:
# arriving, the copy served to no one).
KILLED_AT = [("pre_verify", "active"), ("final_catch_up", "frozen"), ("flip", "frozen")]


@pytest.mark.parametrize("step,source_state", KILLED_AT)
def test_killed_then_resumed(ctl, stack, step, source_state):
    w = _world(ctl, stack, postings=6)
    tenant, source, target = w["tenant"], stack["cells"]["cli-1"], stack["cells"]["cli-2"]
    proc, move_id = _spawn_paused(stack, tenant, step)
    if step == "pre_verify":  # still writing on the source: the catch-up after the pre-verification copies it
        assert _post(stack, "cli-1", w, 11) == 201
    _kill(proc)
    assert (_state_in(source.database_url, tenant), _state_in(target.database_url, tenant)) == \
        (source_state, "arriving")
    assert httpx.get(f"{target.url}/api/ledger_accounts/{w['accounts'][0]}", auth=(tenant, w["secret"]),
                     timeout=10).status_code == 421
    assert ctl.json("moves", "show", move_id)["state"] == "running"
    before = _rows(source.database_url, tenant)
    result = ctl.json("moves", "resume", move_id)
    assert result["state"] == "done" and result["verification"]["ok"] and result["post_verify"]["ok"], result
    assert _rows(target.database_url, tenant) == before
    assert ctl.json("tenants", "show", tenant)["cell"] == "cli-2"
    assert (_state_in(source.database_url, tenant), _state_in(target.database_url, tenant)) == ("moved_out", "active")
    assert _writable_on(stack, w) == ["cli-2"]
    assert ctl.json("verify", "--tenant", tenant, "--unapplied-age-max-s", "0")["violations"] == []


@pytest.mark.parametrize("step,source_state", KILLED_AT)
def test_killed_then_aborted(ctl, stack, step, source_state):
    w = _world(ctl, stack, postings=6)
    tenant, source, target = w["tenant"], stack["cells"]["cli-1"], stack["cells"]["cli-2"]
    before = _rows(source.database_url, tenant)
    proc, move_id = _spawn_paused(stack, tenant, step)
    _kill(proc)
    assert _state_in(source.database_url, tenant) == source_state
    leaving = run_sql(source.database_url, "SELECT leaving_since IS NOT NULL FROM tenants WHERE id = $1", tenant)[0][0]
    assert leaving == (step != "pre_verify")  # marked leaving before the freeze: its keys not remembered there
    aborted = ctl.json("moves", "abort", move_id, "--yes")
    assert aborted["state"] == "aborted"
    assert _state_in(target.database_url, tenant) is None and sum(_rows(target.database_url, tenant).values()) == 0
    assert (_state_in(source.database_url, tenant), ctl.json("tenants", "show", tenant)["cell"]) == ("active", "cli-1")
    assert run_sql(source.database_url, "SELECT leaving_since FROM tenants WHERE id = $1", tenant)[0][0] is None
    assert _rows(source.database_url, tenant) == before
    assert _writable_on(stack, w) == ["cli-1"]
    assert ctl.json("verify", "--tenant", tenant, "--unapplied-age-max-s", "0")["violations"] == []


def test_a_resume_right_after_a_kill_waits_for_the_dead_movers_lock_and_a_live_mover_is_still_refused(ctl, stack):
    """A killed mover's session keeps the move's lock until PostgreSQL notices its closed connection: `moves resume`
    run in that moment waits for it (a bounded time) and finishes the move. (Before: refused move_busy at once, and
    the operator had to run it again.) A mover that is alive keeps the lock past the wait: a second one is refused."""
    w = _world(ctl, stack, postings=2)
    tenant, source = w["tenant"], stack["cells"]["cli-1"]
    before = _rows(source.database_url, tenant)
    proc, move_id = _spawn_paused(stack, tenant, "catch_up")
    assert ctl.json("moves", "resume", move_id, expect=1)["code"] == "move_busy"
    _kill(proc)

    async def resumed_while_a_session_holds_the_lock():
        # The dead mover's session, standing in for the moment PostgreSQL takes to end it: it lets go of the lock
        # only once the resume has tried it.
        dying = await asyncpg.connect(stack["cp_url"])
        try:
            await dying.fetchval("SELECT pg_advisory_lock(hashtextextended('move:' || $1::text, 0))", move_id)
            resume = await spawn_async(stack, "moves", "resume", move_id)

            async def tried() -> bool:
                return resume.returncode is not None or await dying.fetchval(
                    "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                    "AND query LIKE '%pg_try_advisory_lock(hashtextextended(''move:''%'")
            await until(tried, "the resume to try the move's lock", 30)
        finally:
            await dying.close()
        return await finished(resume)

    rc, result = asyncio.run(resumed_while_a_session_holds_the_lock())
    assert rc == 0, result
    assert result["state"] == "done" and result["verification"]["ok"] and result["post_verify"]["ok"], result
    assert _rows(stack["cells"]["cli-2"].database_url, tenant) == before


def test_killed_past_the_flip_is_resumed_not_aborted(ctl, stack):
    w = _world(ctl, stack, postings=4)
    tenant, source, target = w["tenant"], stack["cells"]["cli-1"], stack["cells"]["cli-2"]
    before = _rows(source.database_url, tenant)
    proc, move_id = _spawn_paused(stack, tenant, "source_moved_out")
    _kill(proc)
    # The route points at the target, both copies are frozen: the tenant waits (the router holds its writes), its
    # reads served by the target, whole.
    assert ctl.json("tenants", "show", tenant)["cell"] == "cli-2"
    assert (_state_in(source.database_url, tenant), _state_in(target.database_url, tenant)) == ("frozen", "frozen")
    on_target = httpx.Client(base_url=target.url, auth=(tenant, w["secret"]), timeout=10)
    for account in w["accounts"]:
        read = on_target.get(f"/api/ledger_accounts/{account}")
        assert read.status_code == 200, read.text
        assert read.json()["balances"] == w["http"].get(f"/api/ledger_accounts/{account}").json()["balances"]
    assert ctl.json("moves", "abort", move_id, "--yes", expect=1)["code"] == "move_past_flip"
    result = ctl.json("moves", "resume", move_id)
    assert result["state"] == "done" and result["verification"]["ok"], result
    assert _rows(target.database_url, tenant) == before
    assert _writable_on(stack, w) == ["cli-2"]


def test_a_mover_resumed_long_after_it_died_in_the_freeze_unfreezes_the_tenant_then_finishes(ctl, stack):
    """Killed inside the freeze, before its final catch-up, and resumed once the tenant has been frozen longer than
    CONTROL_PLANE_MOVE_FREEZE_S_LIMIT (2 s here): the resumed final catch-up runs past the limit at its first batch
    and is given up (its copy rolled back on the target), the tenant unfrozen on its source, the catch-up rounds go
    on, and a new, short freeze finishes the move: done, verified, the freeze given up in its report."""
    w = _world(ctl, stack, postings=6)
    tenant, source, target = w["tenant"], stack["cells"]["cli-1"], stack["cells"]["cli-2"]
    before = _rows(source.database_url, tenant)
    proc, move_id = _spawn_paused(stack, tenant, "final_catch_up")
    _kill(proc)
    assert _state_in(source.database_url, tenant) == "frozen"
    rows = run_sql(stack["cp_url"], "SELECT watermarks FROM moves WHERE tenant_id = $1", tenant)
    frozen_at = json.loads(rows[0]["watermarks"])["frozen_at"]
    wait_until(lambda: time.time() - frozen_at > 2.0, "the tenant to be frozen longer than the limit", 10)
    result = Ledgerctl({**ctl.env, "CONTROL_PLANE_MOVE_FREEZE_S_LIMIT": "2"}).json("moves", "resume", move_id)
    assert result["state"] == "done" and result["verification"]["ok"] and result["post_verify"]["ok"], result
    assert len(result["freezes_given_up_ms"]) == 1 and result["freezes_given_up_ms"][0] > 2000, result
    assert result["freeze_ms"] < result["freezes_given_up_ms"][0]  # the freeze that finished it: a new one
    assert _rows(target.database_url, tenant) == before
    assert (_state_in(source.database_url, tenant), _state_in(target.database_url, tenant)) == ("moved_out", "active")
    assert _writable_on(stack, w) == ["cli-2"]


@pytest.mark.parametrize("step", ["verify", "flip"])
def test_a_mover_dead_in_the_freeze_leaves_the_tenant_frozen_no_longer_than_its_lease(ctl, stack, step):
    """Killed inside the freeze after its final catch-up (before its verification, or before its flip), its lease 2 s
    (CONTROL_PLANE_MOVE_FREEZE_S_LEASE): the source cell takes the tenant's writes again once the lease is over, with
    no operator. `moves resume` then finds the tenant unfrozen on its source and goes back to the catch-up rounds: the
    move finishes (never flipping the route after the source took writes), the postings made after the lease on the
    target, nothing lost, one cell taking writes."""
    w = _world(ctl, stack, postings=4)
    tenant, source, target = w["tenant"], stack["cells"]["cli-1"], stack["cells"]["cli-2"]
    # A lease must exceed what a freeze may take (its limit plus the verification's bound): both lowered below 2 s.
    proc, move_id = _spawn_paused(stack, tenant, step, move_freeze_s_lease="2", move_freeze_s_limit="1",
                                  move_freeze_s_max="0.5")
    _kill(proc)
    assert _state_in(source.database_url, tenant) == "frozen"
    assert _post(stack, "cli-1", w) == 503
    wait_until(lambda: _post(stack, "cli-1", w, 13) == 201, "the source to take the tenant's writes past the lease "
               "(it stays frozen, its mover dead)", 20)
    assert _state_in(source.database_url, tenant) == "active"
    assert ctl.json("tenants", "show", tenant)["cell"] == "cli-1"
    before = _rows(source.database_url, tenant)
    result = ctl.json("moves", "resume", move_id)
    assert result["state"] == "done" and result["verification"]["ok"] and result["post_verify"]["ok"], result
    assert len(result["freezes_given_up_ms"]) == 1, result
    assert _rows(target.database_url, tenant) == before
    assert (_state_in(source.database_url, tenant), _state_in(target.database_url, tenant)) == ("moved_out", "active")
    assert _writable_on(stack, w) == ["cli-2"]
    assert ctl.json("verify", "--tenant", tenant, "--unapplied-age-max-s", "0")["violations"] == []


def test_a_move_whose_every_final_catch_up_overruns_stops_after_three_freezes_with_the_tenant_writable(ctl, stack):
    """A limit no final catch-up can meet (1 ms): each freeze is given up at the final catch-up's first batch, and the
    third stops the move, `move_not_converging`, the tenant active and writable on its source; resumed with the
    default limit, the move finishes with the source's rows on the target."""
    w = _world(ctl, stack, postings=6)
    tenant, source, target = w["tenant"], stack["cells"]["cli-1"], stack["cells"]["cli-2"]
    problem = Ledgerctl({**ctl.env, "CONTROL_PLANE_MOVE_FREEZE_S_LIMIT": "0.001"}).json(
        "tenants", "move", tenant, "--to", "cli-2", "--yes", expect=1)
    assert problem["code"] == "move_not_converging", problem
    move = problem["details"]
    assert (move["state"], move["step"], len(move["freezes_given_up_ms"])) == ("running", "catch_up", 3), move
    assert _state_in(source.database_url, tenant) == "active"
    assert _writable_on(stack, w) == ["cli-1"]
    before = _rows(source.database_url, tenant)
    result = ctl.json("moves", "resume", move["id"])
    assert result["state"] == "done" and result["verification"]["ok"] and result["post_verify"]["ok"], result
    assert _rows(target.database_url, tenant) == before
    assert _writable_on(stack, w) == ["cli-2"]


def test_a_key_revoked_during_a_move_stays_revoked_where_the_tenant_lands(ctl, stack):
    """An operator's change of the tenant in its cell (a key revoked, a webhook endpoint added) takes the tenant's
    write fence as its writes do: inside a move's freeze it waits (then fails, retryable: exit 4 tenant_frozen),
    never lands on the source after the final catch-up read it (a revoked key alive again on the target)."""
    w = _world(ctl, stack, postings=2)
    tenant, target = w["tenant"], stack["cells"]["cli-2"]
    key_id = next(k["id"] for k in ctl.json("keys", "list", tenant))
    proc, move_id = _spawn_paused(stack, tenant, "flip")  # frozen on its source, the final catch-up done
    quick = Ledgerctl({**ctl.env, "CONTROL_PLANE_TENANT_FROZEN_WAIT_S": "0.3",
                       "CONTROL_PLANE_WEBHOOK_ALLOW_HTTP_LOOPBACK": "true"})
    assert quick.json("keys", "revoke", tenant, key_id, "--yes", expect=4)["code"] == "tenant_frozen"
    assert quick.json("webhooks", "add", tenant, "http://127.0.0.1:9/hooks", expect=4)["code"] == "tenant_frozen"
    assert quick.json("keys", "create", tenant, expect=4)["code"] == "tenant_frozen"
    assert [k["revoked_at"] for k in ctl.json("keys", "list", tenant) if k["id"] == key_id] == [None]
    # A revoke given while the move is in its freeze is done once the move ends, on the cell the tenant lands on.
    revoker = spawn(stack, "keys", "revoke", tenant, key_id, "--yes", tenant_frozen_wait_s="60")
    _kill(proc)
    assert ctl.json("moves", "resume", move_id)["state"] == "done"
    out, err = revoker.communicate(timeout=60)
    assert revoker.returncode == 0, err
    assert json.loads(out)["revoked_at"] is not None
    assert [k["revoked_at"] is not None for k in ctl.json("keys", "list", tenant) if k["id"] == key_id] == [True]
    wait_until(lambda: httpx.get(target.url + "/api/ledgers", auth=(tenant, w["secret"]), timeout=5).status_code
               == 401, "the target to refuse the key revoked during the move (its key cache: 0.5 s)", 10)


def test_an_abort_that_read_the_move_just_before_its_flip_leaves_it_resumable(ctl, stack, monkeypatch):
    """`moves abort` reads the move (step flip), then the mover's flip commits, then the abort marks it: it must find
    the move past its flip and refuse, the move still running, not mark it aborted with the tenant routed to a
    target frozen for good (no resume of an aborted move, no abort past the flip)."""
    from control_plane import moves

    w = _world(ctl, stack, postings=2)
    tenant = w["tenant"]
    proc, move_id = _spawn_paused(stack, tenant, "source_moved_out")  # the flip committed
    _kill(proc)
    read = moves.fetch_move
    calls = []

    async def read_before_the_flip(conn, mid):
        move = await read(conn, mid)
        calls.append(move["step"])
        return {**move, "step": "flip"} if len(calls) <= 2 else move  # ledgerctl's and the abort's first reads

    monkeypatch.setattr(moves, "fetch_move", read_before_the_flip)
    assert ctl.json("moves", "abort", move_id, "--yes", expect=1)["code"] == "move_past_flip"
    monkeypatch.undo()
    assert ctl.json("moves", "show", move_id)["state"] == "running"
    result = ctl.json("moves", "resume", move_id)
    assert result["state"] == "done" and result["verification"]["ok"], result
    assert _writable_on(stack, w) == ["cli-2"]


def test_verify_names_a_move_whose_mover_died_with_the_commands_that_end_it(ctl, stack):
    """A mover SIGKILLed mid-move leaves the move `running` and its tenant `moving`. Once no mover has updated the move
    for CONTROL_PLANE_MOVE_UPDATE_AGE_MAX_S (1 s here), `ledgerctl verify` (of the tenant, and of either cell) exits 3
    naming it with `moves resume ID` and `moves abort ID`, and `moves list` shows it stalled; resumed, it finishes and
    verify is clean again."""
    w = _world(ctl, stack, postings=2)
    tenant = w["tenant"]
    proc, move_id = _spawn_paused(stack, tenant, "pre_verify")
    _kill(proc)
    quick = Ledgerctl({**ctl.env, "CONTROL_PLANE_MOVE_UPDATE_AGE_MAX_S": "1"})
    [listed] = wait_until(lambda: [m for m in quick.json("moves", "list", "--tenant", tenant) if m["stalled"]],
                          "the move to be listed stalled", 20)
    assert (listed["id"], listed["state"]) == (move_id, "running"), listed
    pretty = quick("moves", "list", "--tenant", tenant).stdout
    assert move_id in pretty and "running (stalled)" in pretty, pretty
    for scope in (("--tenant", tenant), ("--cell", "cli-1"), ("--cell", "cli-2")):
        problem = quick.json("verify", *scope, "--unapplied-age-max-s", "0", expect=3)
        found = [v for v in problem["details"]["violations"] if move_id in v]
        assert len(found) == 1, (scope, problem)
        assert f"`ledgerctl moves resume {move_id}`" in found[0] and f"`ledgerctl moves abort {move_id}`" in found[0]
    assert ctl.json("moves", "resume", move_id)["state"] == "done"
    assert quick.json("verify", "--tenant", tenant, "--unapplied-age-max-s", "0")["violations"] == []
    assert not quick.json("moves", "list", "--tenant", tenant)[0]["stalled"]


def test_a_live_mover_slower_than_the_bound_is_never_taken_for_a_dead_one(ctl, stack):
    """A mover paused by the drill before its pre-verification is alive: it touches its move's row while it waits, so
    neither verify nor `moves list` calls it stalled however long it waits (here three times the 1 s bound)."""
    w = _world(ctl, stack, postings=2)
    tenant = w["tenant"]
    proc, move_id = _spawn_paused(stack, tenant, "pre_verify")
    try:
        quick = Ledgerctl({**ctl.env, "CONTROL_PLANE_MOVE_UPDATE_AGE_MAX_S": "1"})
        paused_at = time.monotonic()
        while time.monotonic() - paused_at < 3:
            assert not quick.json("moves", "list", "--tenant", tenant)[0]["stalled"]
            assert quick.json("verify", "--tenant", tenant, "--unapplied-age-max-s", "0")["violations"] == []
            time.sleep(0.2)
    finally:
        _kill(proc)
    assert ctl.json("moves", "resume", move_id)["state"] == "done"


def _move_row(stack, move_id: str) -> dict:
    row = run_sql(stack["cp_url"], "SELECT step, state, watermarks FROM moves WHERE id = $1::uuid", move_id)[0]
    return {"step": row["step"], "state": row["state"], "w": json.loads(row["watermarks"])}


def _sessions_killed(database_url: str) -> int:
    """Every session on the database but this one ended, as by a PostgreSQL restart (the cell's pool's included)."""
    db = database_url.rsplit("/", 1)[1].split("?")[0]
    return len(run_sql(database_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = $1 AND pid <> pg_backend_pid()", db))


@pytest.mark.parametrize("step", ["copy", "catch_up"])
def test_the_target_database_lost_mid_round_stops_the_mover_resumable_and_resume_finishes(ctl, stack, step):
    """The target cell's sessions ended (pg_terminate_backend, as in a restart) in the middle of the copy or of a
    catch-up round (one-row batches, so that the round is under way): the mover stops with exit 4 `database_failed`
    naming `moves resume`, the move still running, nothing half-done; `moves resume` finishes it, the target holding
    exactly the source's rows, verify clean, one cell taking writes."""
    w = _world(ctl, stack, postings=8)
    tenant, source, target = w["tenant"], stack["cells"]["cli-1"], stack["cells"]["cli-2"]
    slow = {"move_batch_rows": "1", "move_batch_pause_s": "0.1"}
    if step == "copy":
        proc = spawn(stack, "tenants", "move", tenant, "--to", "cli-2", "--yes", **slow)
    else:  # stopped before the catch-up, the tenant writes more, then a slow mover resumes it
        paused, move_id = _spawn_paused(stack, tenant, "catch_up")
        for amount in range(20, 26):
            assert _post(stack, "cli-1", w, amount) == 201
        _kill(paused)
        proc = spawn(stack, "moves", "resume", move_id, **slow)

    def under_way() -> str | None:  # a round of `step`, saved with some of its rows copied
        assert proc.poll() is None, proc.communicate()
        rows = run_sql(stack["cp_url"], "SELECT id, watermarks FROM moves WHERE tenant_id = $1", tenant)
        rnd = rows and json.loads(rows[0]["watermarks"]).get("round") or {}
        return str(rows[0]["id"]) if rnd.get("step") == step and rnd.get("rows", 0) >= 3 else None

    move_id = wait_until(under_way, f"the mover to get under way in its {step}")
    assert _sessions_killed(target.database_url) >= 1
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, (proc.returncode, err.decode()[-3000:])
    problem = json.loads(err.decode().strip().splitlines()[-1])
    assert problem["code"] == "database_failed", problem
    assert f"`ledgerctl moves resume {move_id}`" in problem["title"] and "cell cli-2" in problem["title"], problem
    moved = _move_row(stack, move_id)
    assert (moved["state"], moved["step"]) == ("running", step), moved
    assert ctl.json("tenants", "show", tenant)["cell"] == "cli-1"
    assert _state_in(source.database_url, tenant) == "active"
    before = _rows(source.database_url, tenant)
    result = ctl.json("moves", "resume", move_id)
    assert result["state"] == "done" and result["verification"]["ok"] and result["post_verify"]["ok"], result
    assert _rows(target.database_url, tenant) == before
    assert _writable_on(stack, w) == ["cli-2"]
    assert ctl.json("verify", "--tenant", tenant, "--unapplied-age-max-s", "0")["violations"] == []
