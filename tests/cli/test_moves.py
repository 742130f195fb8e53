"""ledgerctl tenants move / moves list|show|resume|abort|purge against two real cells (`python -m cell`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import uuid

import asyncpg
import httpx

from cli_rig import RouterProcess, finished, holding, queue_payment, spawn, spawn_async, until, wait_until
from test_ledgerctl import new_id, run_sql


def tenant_books(ctl, stack, cell: str, prefix: str) -> tuple[str, str, httpx.Client, str, list[str]]:
    """A new tenant on `cell` with a key, a ledger and a cash (debit) and a revenue (credit) account: (tenant, its
    API key secret, its HTTP client on the cell, ledger id, [cash id, revenue id])."""
    tenant = new_id(prefix)
    ctl.json("tenants", "create", tenant, "--cell", cell)
    secret = ctl.json("keys", "create", tenant)["secret"]
    http = httpx.Client(base_url=stack["cells"][cell].url, auth=(tenant, secret), timeout=10)
    ledger = http.post("/api/ledgers", json={"name": "main"}).json()["id"]
    accounts = [http.post("/api/ledger_accounts", json={"name": n, "ledger_id": ledger, "normal_balance": nb,
                                                        "currency": "USD"}).json()["id"]
                for n, nb in (("cash", "debit"), ("revenue", "credit"))]
    return tenant, secret, http, ledger, accounts


def _world(ctl, stack, cell: str = "cli-1", postings: int = 6) -> dict:
    """A tenant on `cell` with a key, a ledger, two accounts, `postings` posted transfers with idempotency keys,
    a pending one and two queued (unapplied) effects' worth of async postings."""
    tenant, secret, http, ledger, accounts = tenant_books(ctl, stack, cell, "mv")
    answers = {}
    for i in range(postings):
        key = f"k-{i}"
        r = http.post("/api/ledger_transactions", headers={"Idempotency-Key": key}, json=_transfer(ledger, accounts, i + 1))
        assert r.status_code == 201, r.text
        answers[key] = r.json()
    pending = http.post("/api/ledger_transactions", json=_transfer(ledger, accounts, 1000, "pending"))
    assert pending.status_code == 201
    # One entry's metadata edited (a ledger_entry_metadata row): moved with the rest.
    edited = answers["k-0"]["ledger_entries"][0]["id"]
    assert http.patch(f"/api/ledger_entries/{edited}", json={"metadata": {"moved": "yes"}}).status_code == 200
    # A statement and a settlement (its transaction, the entries it holds): moved with the rest.
    statement = http.post("/api/ledger_account_statements", json={
        "ledger_account_id": accounts[1], "effective_at_lower_bound": "2000-01-01T00:00:00Z",
        "effective_at_upper_bound": "2100-01-01T00:00:00Z"})
    assert statement.status_code == 201, statement.text
    settlement = http.post("/api/ledger_account_settlements", json={
        "settled_ledger_account_id": accounts[1], "contra_ledger_account_id": accounts[0]})
    assert settlement.status_code == 201, settlement.text
    queue_payment(stack["cells"][cell].database_url, tenant, ledger, accounts[0], accounts[1], 77)
    return {"statement": statement.json(), "settlement": settlement.json(), "tenant": tenant, "secret": secret, "ledger": ledger, "accounts": accounts, "answers": answers,
            "pending": pending.json()["id"], "http": http, "edited_entry": edited}


def _transfer(ledger: str, accounts: list[str], amount: int, status: str = "posted") -> dict:
    return {"ledger_id": ledger, "status": status, "ledger_entries": [
        {"ledger_account_id": accounts[0], "direction": "debit", "amount": amount},
        {"ledger_account_id": accounts[1], "direction": "credit", "amount": amount}]}


def _rows(url: str, tenant: str) -> dict[str, int]:
    tables = ["api_keys", "ledgers", "ledger_accounts", "account_balances", "ledger_transactions",
              "ledger_transaction_versions", "ledger_entries", "ledger_entry_metadata", "balance_effects", "idempotency_keys",
              "ledger_account_statements", "ledger_account_settlements", "ledger_account_settlement_entries"]
    return {t: run_sql(url, f"SELECT count(*) FROM {t} WHERE tenant_id = $1", tenant)[0][0] for t in tables}


def _state_in(url: str, tenant: str):
    rows = run_sql(url, "SELECT state FROM tenants WHERE id = $1", tenant)
    return rows[0][0] if rows else None


def test_move_refusals_change_nothing(ctl, stack):
    w = _world(ctl, stack, postings=1)
    tenant = w["tenant"]
    assert ctl.json("tenants", "move", tenant, "--to", "cli-1", "--yes", expect=1)["code"] == "same_cell"
    assert ctl.json("tenants", "move", tenant, "--to", "cli-nowhere", "--yes", expect=1)["code"] == "unknown_cell"
    assert ctl.json("tenants", "move", "nobody", "--to", "cli-2", "--yes", expect=1)["code"] == "unknown_tenant"
    cell = stack["cells"]["cli-2"]
    run_sql(stack["cp_url"], "INSERT INTO cells (name, api_url, database_url, state) VALUES ('cli-off', $1, $2, "
            "'disabled') ON CONFLICT DO NOTHING", cell.url, cell.database_url)
    assert ctl.json("tenants", "move", tenant, "--to", "cli-off", "--yes", expect=1)["code"] == "cell_not_active"
    # A table the mover does not know, with a tenant_id: the move refuses to start.
    source_url = stack["cells"]["cli-1"].database_url
    run_sql(source_url, "CREATE TABLE IF NOT EXISTS mystery_rows (tenant_id text NOT NULL, x int)")
    try:
        refused = ctl.json("tenants", "move", tenant, "--to", "cli-2", "--yes", expect=1)
        assert refused["code"] == "unknown_tables" and "mystery_rows" in refused["title"]
    finally:
        run_sql(source_url, "DROP TABLE mystery_rows")
    # A target not migrated to hold a copy being made ('arriving', cell migration 0225).
    run_sql(cell.database_url, "DELETE FROM schema_migrations WHERE name = '0225_tenant_arriving'")
    try:
        refused = ctl.json("tenants", "move", tenant, "--to", "cli-2", "--yes", expect=1)
        assert refused["code"] == "cell_not_migrated" and "0225_tenant_arriving" in refused["title"], refused
    finally:
        run_sql(cell.database_url, "INSERT INTO schema_migrations (name) VALUES ('0225_tenant_arriving')")
    # A tenant already moving.
    move_id = uuid.uuid4()
    run_sql(stack["cp_url"], "INSERT INTO moves (id, tenant_id, source_cell, target_cell) VALUES ($1, $2, 'cli-1', "
            "'cli-2')", move_id, tenant)
    try:
        assert ctl.json("tenants", "move", tenant, "--to", "cli-2", "--yes", expect=1)["code"] == "already_moving"
    finally:
        run_sql(stack["cp_url"], "DELETE FROM moves WHERE id = $1", move_id)
    # Not confirmed.
    result = ctl("tenants", "move", tenant, "--to", "cli-2", input="wrong\n", expect=1)
    assert "not confirmed" in result.stderr
    assert ctl.json("tenants", "show", tenant)["cell"] == "cli-1"
    assert _state_in(source_url, tenant) == "active" and _state_in(cell.database_url, tenant) is None
    assert ctl.json("moves", "list", "--tenant", tenant) == []


def test_dry_run_prints_the_plan(ctl, stack):
    w = _world(ctl, stack, postings=2)
    plan = ctl.json("tenants", "move", w["tenant"], "--to", "cli-2", "--dry-run")
    assert (plan["source"], plan["target"]) == ("cli-1", "cli-2")
    # 2 postings, the pending one, the settlement's transaction, the queued payment: two entries each
    assert plan["rows"]["ledger_entries"] == 2 * 2 + 2 + 2 + 2 and plan["rows"]["tenants"] == 1
    assert ctl.json("moves", "list", "--tenant", w["tenant"]) == []


def test_move_show_list_purge(ctl, stack):
    w = _world(ctl, stack)
    tenant, source, target = w["tenant"], stack["cells"]["cli-1"], stack["cells"]["cli-2"]
    before = _rows(source.database_url, tenant)
    balances = {a: w["http"].get(f"/api/ledger_accounts/{a}").json()["balances"] for a in w["accounts"]}
    result = ctl.json("tenants", "move", tenant, "--to", "cli-2", "--yes")
    assert result["state"] == "done" and result["verification"]["ok"] and result["post_verify"]["ok"], result
    assert result["freeze_ms"] is not None and result["freeze_ms"] >= 0
    assert [s["step"] for s in result["steps"]] == ["copy", "catch_up", "pre_verify", "freeze", "final_catch_up",
                                                    "verify", "flip", "source_moved_out", "unfreeze",
                                                    "post_verify"]
    assert _rows(target.database_url, tenant) == before
    assert ctl.json("tenants", "show", tenant)["cell"] == "cli-2"
    assert (_state_in(source.database_url, tenant), _state_in(target.database_url, tenant)) == ("moved_out", "active")
    # The source answers 421 for the tenant; the target serves it, with its balances and idempotency answers.
    old = w["http"]
    new = httpx.Client(base_url=target.url, auth=(tenant, w["secret"]), timeout=10)
    wait_until(lambda: old.post("/api/ledger_transactions", json=_transfer(w["ledger"], w["accounts"], 1))
               .status_code == 421, "the source to answer 421 for the moved tenant", 10)
    for account, balance in balances.items():
        assert new.get(f"/api/ledger_accounts/{account}").json()["balances"]["posted_balance"] == \
            balance["posted_balance"]
    for key, answer in w["answers"].items():
        replay = new.post("/api/ledger_transactions", headers={"Idempotency-Key": key},
                          json=_transfer(w["ledger"], w["accounts"], int(key[2:]) + 1))
        assert replay.status_code == 201 and replay.json()["id"] == answer["id"]
    posted = new.patch(f"/api/ledger_transactions/{w['pending']}", json={"status": "posted"})
    assert posted.status_code == 200, posted.text
    assert new.get(f"/api/ledger_entries/{w['edited_entry']}").json()["metadata"] == {"moved": "yes"}
    assert new.get(f"/api/ledger_account_statements/{w['statement']['id']}").json() == w["statement"]
    settlement = new.patch(f"/api/ledger_account_settlements/{w['settlement']['id']}", json={"status": "posted"})
    assert settlement.status_code == 200 and settlement.json()["amount"] == w["settlement"]["amount"] > 0
    assert ctl.json("verify", "--tenant", tenant, "--unapplied-age-max-s", "0")["violations"] == []
    # list / show
    listed = ctl.json("moves", "list", "--tenant", tenant)
    assert [(m["id"], m["state"]) for m in listed] == [(result["id"], "done")]
    assert ctl.json("moves", "show", result["id"])["freeze_ms"] == result["freeze_ms"]
    pretty = ctl("moves", "show", result["id"]).stdout
    assert "freeze window:" in pretty and "verification: ok" in pretty
    assert "target's invariants after the unfreeze: ok" in pretty
    assert ctl.json("moves", "resume", result["id"], expect=1)["code"] == "move_not_running"
    assert ctl.json("moves", "abort", result["id"], "--yes", expect=1)["code"] == "move_past_flip"
    # purge: the source keeps only the moved-out tenant row and its key hashes.
    purged = ctl.json("moves", "purge", result["id"], "--yes")
    assert purged["purged"]["ledger_entries"] == before["ledger_entries"]
    left = _rows(source.database_url, tenant)
    assert left == {**{t: 0 for t in left}, "api_keys": before["api_keys"]}
    assert _state_in(source.database_url, tenant) == "moved_out"
    assert _rows(target.database_url, tenant)["ledger_entries"] == before["ledger_entries"]


def _spawn_mover(stack, *args: str) -> subprocess.Popen:
    """ledgerctl ARGS, its moves slowed down (3 rows a batch, 0.1 s between batches): a tenant of _world's copies for
    seconds, the window a test acts in once _wait_for_copy returns (what it does there takes a fraction of one)."""
    return spawn(stack, *args, move_batch_rows="3", move_batch_pause_s="0.1")


def _wait_for_copy(stack, tenant: str, proc: subprocess.Popen) -> str:
    """The running move's id once its mover has copied some rows, mid-copy."""
    def copying() -> str | None:
        assert proc.poll() is None, proc.stderr.read()
        rows = run_sql(stack["cp_url"], "SELECT id, step, watermarks FROM moves WHERE tenant_id = $1 "
                       "AND state = 'running'", tenant)
        if rows and rows[0]["step"] == "copy" and sum(json.loads(rows[0]["watermarks"]).get("copied", {}).values()) >= 6:
            return str(rows[0]["id"])
        return None

    return wait_until(copying, "the mover to start copying", 30)


def test_a_killed_mover_is_resumed_to_the_same_result(ctl, stack):
    w = _world(ctl, stack, postings=8)
    tenant, source, target = w["tenant"], stack["cells"]["cli-1"], stack["cells"]["cli-2"]
    before = _rows(source.database_url, tenant)
    proc = _spawn_mover(stack, "tenants", "move", tenant, "--to", "cli-2", "--yes")
    move_id = _wait_for_copy(stack, tenant, proc)
    # The tenant keeps writing on the source while it is copied.
    extra = w["http"].post("/api/ledger_transactions", json=_transfer(w["ledger"], w["accounts"], 5))
    assert extra.status_code == 201
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ctl.json("moves", "show", move_id)["state"] == "running"
    assert ctl.json("tenants", "show", tenant)["cell"] == "cli-1"
    result = ctl.json("moves", "resume", move_id)
    assert result["state"] == "done" and result["verification"]["ok"], result
    after = _rows(target.database_url, tenant)
    assert after == {**before, "ledger_transactions": before["ledger_transactions"] + 1,
                     "ledger_transaction_versions": before["ledger_transaction_versions"] + 1,
                     "ledger_entries": before["ledger_entries"] + 2, "balance_effects": before["balance_effects"] + 2}
    assert after == _rows(source.database_url, tenant)
    assert ctl.json("tenants", "show", tenant)["cell"] == "cli-2"
    assert ctl.json("verify", "--tenant", tenant, "--unapplied-age-max-s", "0")["violations"] == []


def test_abort_mid_copy_returns_the_tenant_to_its_source(ctl, stack):
    w = _world(ctl, stack, postings=8)
    tenant, source, target = w["tenant"], stack["cells"]["cli-1"], stack["cells"]["cli-2"]
    proc = _spawn_mover(stack, "tenants", "move", tenant, "--to", "cli-2", "--yes")
    move_id = _wait_for_copy(stack, tenant, proc)
    aborted = ctl.json("moves", "abort", move_id, "--yes")
    assert aborted["state"] == "aborted" and aborted["deleted_on_target"]["ledger_entries"] >= 0
    # The mover sees the abort at its next batch and stops (exit 1, move_stopped).
    assert proc.wait(30) == 1
    ctl.json("moves", "abort", move_id, "--yes")  # idempotent: removes whatever the mover wrote meanwhile
    assert _state_in(target.database_url, tenant) is None
    assert sum(_rows(target.database_url, tenant).values()) == 0
    assert _state_in(source.database_url, tenant) == "active"
    assert ctl.json("tenants", "show", tenant)["cell"] == "cli-1"
    r = w["http"].post("/api/ledger_transactions", json=_transfer(w["ledger"], w["accounts"], 5))
    assert r.status_code == 201
    # And it can be moved again.
    assert ctl.json("tenants", "move", tenant, "--to", "cli-2", "--yes")["state"] == "done"


def test_a_tenant_moves_back_to_a_cell_it_left(ctl, stack):
    # `moves abort` past the flip says "move the tenant back instead": the cell it left keeps a moved-out copy (or,
    # purged, its tenant row and key hashes), and a move back replaces that copy with the live one.
    w = _world(ctl, stack, postings=3)
    tenant, source, target = w["tenant"], stack["cells"]["cli-1"], stack["cells"]["cli-2"]
    there = ctl.json("tenants", "move", tenant, "--to", "cli-2", "--yes")
    assert there["state"] == "done", there
    new = httpx.Client(base_url=target.url, auth=(tenant, w["secret"]), timeout=10)
    later = new.post("/api/ledger_transactions", json=_transfer(w["ledger"], w["accounts"], 9))
    assert later.status_code == 201, later.text
    back = ctl.json("tenants", "move", tenant, "--to", "cli-1", "--yes")
    assert back["state"] == "done" and back["verification"]["ok"] and back["post_verify"]["ok"], back
    assert _rows(source.database_url, tenant) == _rows(target.database_url, tenant)
    assert (_state_in(source.database_url, tenant), _state_in(target.database_url, tenant)) == ("active", "moved_out")
    assert w["http"].get(f"/api/ledger_transactions/{later.json()['id']}").status_code == 200
    # Purged on the cell it left, it moves there again too.
    assert ctl.json("moves", "purge", back["id"], "--yes")["purged"]["ledger_entries"] > 0
    again = ctl.json("tenants", "move", tenant, "--to", "cli-2", "--yes")
    assert again["state"] == "done" and again["verification"]["ok"], again
    assert ctl.json("verify", "--tenant", tenant, "--unapplied-age-max-s", "0")["violations"] == []


def _assert_tenant_moved(response: httpx.Response) -> None:
    """The answer of a cell the tenant left: 421 tenant_moved, problem+json (a stale router follows the route)."""
    assert response.status_code == 421, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "tenant_moved"


def test_an_aborted_move_back_leaves_the_cell_it_left_answering_421(ctl, stack):
    # The tenant left cli-1 (purged there: its tenant row and key hashes answer 421), then a move back to cli-1 is
    # aborted mid-copy: cli-1 is as it was before that move, not empty (401 for a tenant that exists).
    w = _world(ctl, stack, postings=8)
    tenant, source, target = w["tenant"], stack["cells"]["cli-1"], stack["cells"]["cli-2"]
    router = RouterProcess(stack)  # started with the tenant on cli-1: its route goes stale with the move
    try:
        router.wait_started()
        away = ctl.json("tenants", "move", tenant, "--to", "cli-2", "--yes")
        assert away["state"] == "done", away
        ctl.json("moves", "purge", away["id"], "--yes")
        proc = _spawn_mover(stack, "tenants", "move", tenant, "--to", "cli-1", "--yes")
        back = _wait_for_copy(stack, tenant, proc)
        plan = ctl("moves", "abort", back, input="nope\n", expect=1).stderr
        assert "delete its partial copy on cell cli-1, but for the tenant row (moved out again) and key hashes" in plan
        assert ctl.json("moves", "abort", back, "--yes")["state"] == "aborted"
        assert proc.wait(30) == 1
        ctl.json("moves", "abort", back, "--yes")  # idempotent: removes whatever the mover wrote meanwhile
        assert ctl.json("tenants", "show", tenant)["cell"] == "cli-2"
        # A caller on cli-1 with the tenant's key: 421, not 401.
        _assert_tenant_moved(w["http"].get("/api/ledgers"))
        # A router still routing the tenant to cli-1 follows the 421 to cli-2, where the tenant works.
        via = httpx.Client(base_url=router.url, auth=(tenant, w["secret"]), timeout=10)
        read = via.get(f"/api/ledgers/{w['ledger']}")
        assert read.status_code == 200, read.text
        posted = via.post("/api/ledger_transactions", json=_transfer(w["ledger"], w["accounts"], 5))
        assert posted.status_code == 201, posted.text
        assert httpx.get(f"{target.url}/api/ledger_transactions/{posted.json()['id']}",
                         auth=(tenant, w["secret"])).status_code == 200
        assert ctl.json("verify", "--tenant", tenant, "--unapplied-age-max-s", "0")["violations"] == []
        assert ctl.json("verify", "--cell", "cli-1", "--unapplied-age-max-s", "0")["violations"] == []
        # What cli-1 keeps is the purged copy's: the tenant row, moved out, and its key hashes.
        assert (_state_in(source.database_url, tenant), _state_in(target.database_url, tenant)) == \
            ("moved_out", "active")
        left = _rows(source.database_url, tenant)
        assert left == {**{t: 0 for t in left}, "api_keys": 1}
        # It moves back there all the same; purged on cli-2 then, cli-2 answers 421 in turn.
        again = ctl.json("tenants", "move", tenant, "--to", "cli-1", "--yes")
        assert again["state"] == "done" and again["verification"]["ok"] and again["post_verify"]["ok"], again
        ctl.json("moves", "purge", again["id"], "--yes")
        _assert_tenant_moved(httpx.get(f"{target.url}/api/ledgers", auth=(tenant, w["secret"]), timeout=10))
        assert via.get(f"/api/ledger_transactions/{posted.json()['id']}").status_code == 200
        assert ctl.json("verify", "--tenant", tenant, "--unapplied-age-max-s", "0")["violations"] == []
        assert ctl.json("verify", "--cell", "cli-2", "--unapplied-age-max-s", "0")["violations"] == []
    finally:
        router.stop()


def test_a_move_back_keeps_the_key_hashes_of_the_cell_it_left_while_it_replaces_its_copy(ctl, stack):
    # The move back to cli-1 has deleted the moved-out copy there and not yet copied anything (its first write to the
    # tenant row held by a lock here, as a mover killed at that point would leave it): cli-1 still answers the
    # tenant's key 421, not 401.
    w = _world(ctl, stack, postings=2)
    tenant, source = w["tenant"], stack["cells"]["cli-1"]
    assert ctl.json("tenants", "move", tenant, "--to", "cli-2", "--yes")["state"] == "done"

    async def go():
        async with holding(source.database_url, "LOCK TABLE tenants IN SHARE MODE") as held:
            back = await spawn_async(stack, "tenants", "move", tenant, "--to", "cli-1", "--yes")
            await until(lambda: held.queued(back, "%UPDATE tenants SET state = 'arriving'%"),
                        "the move back to have deleted the moved-out copy")
            async with httpx.AsyncClient(base_url=source.url, auth=(tenant, w["secret"]), timeout=10) as old:
                meanwhile = await old.get("/api/ledgers")
            await held.release()
            return meanwhile, await finished(back)

    meanwhile, (rc, back) = asyncio.run(go())
    assert _rows(source.database_url, tenant)["ledger_entries"] > 0  # the copy went on once the lock was let go
    _assert_tenant_moved(meanwhile)
    assert (rc, back["state"]) == (0, "done"), back
    assert w["http"].get(f"/api/ledgers/{w['ledger']}").status_code == 200
    assert ctl.json("verify", "--tenant", tenant, "--unapplied-age-max-s", "0")["violations"] == []


def test_a_stale_router_never_reads_a_move_backs_copy_before_its_flip(ctl, stack):
    # A router that still routes the tenant to cli-1, the cell it left, while a move back copies it there: cli-1
    # answers 421 until the flip (the copy is no one's books yet), and the router follows the route to cli-2 for the
    # tenant's whole books; once the move is done, cli-1 serves them.
    w = _world(ctl, stack, postings=8)
    tenant, source, target = w["tenant"], stack["cells"]["cli-1"], stack["cells"]["cli-2"]
    cash = w["accounts"][0]
    router = RouterProcess(stack)  # started with the tenant on cli-1: its route goes stale with the move
    try:
        router.wait_started()
        assert ctl.json("tenants", "move", tenant, "--to", "cli-2", "--yes")["state"] == "done"
        new = httpx.Client(base_url=target.url, auth=(tenant, w["secret"]), timeout=10)
        for i in range(3):  # books the copy on cli-1 lacks until the move back's rounds reach them
            assert new.post("/api/ledger_transactions", json=_transfer(w["ledger"], w["accounts"], 1000 + i)
                            ).status_code == 201
        books = new.get(f"/api/ledger_accounts/{cash}").json()["balances"]
        proc = _spawn_mover(stack, "tenants", "move", tenant, "--to", "cli-1", "--yes")
        _wait_for_copy(stack, tenant, proc)
        assert _state_in(source.database_url, tenant) == "arriving"
        _assert_tenant_moved(w["http"].get(f"/api/ledger_accounts/{cash}"))
        _assert_tenant_moved(w["http"].post("/api/ledger_transactions", json=_transfer(w["ledger"], w["accounts"], 1)))
        via = httpx.Client(base_url=router.url, auth=(tenant, w["secret"]), timeout=10)
        read = via.get(f"/api/ledger_accounts/{cash}")
        assert read.status_code == 200 and read.json()["balances"] == books, (read.text, books)
        assert proc.wait(120) == 0, proc.stderr.read()
        assert (_state_in(source.database_url, tenant), _state_in(target.database_url, tenant)) == \
            ("active", "moved_out")
        assert w["http"].get(f"/api/ledger_accounts/{cash}").json()["balances"] == books
        assert via.get(f"/api/ledger_accounts/{cash}").json()["balances"] == books
        assert ctl.json("verify", "--tenant", tenant, "--unapplied-age-max-s", "0")["violations"] == []
    finally:
        router.stop()


def test_a_resumed_move_back_aborted_leaves_the_cell_it_left_answering_421(ctl, stack):
    # Not purged on cli-1 this time; the move back's mover is killed mid-copy, resumed, then aborted.
    w = _world(ctl, stack, postings=8)
    tenant, source = w["tenant"], stack["cells"]["cli-1"]
    assert ctl.json("tenants", "move", tenant, "--to", "cli-2", "--yes")["state"] == "done"
    proc = _spawn_mover(stack, "tenants", "move", tenant, "--to", "cli-1", "--yes")
    back = _wait_for_copy(stack, tenant, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = _spawn_mover(stack, "moves", "resume", back)
    wait_until(lambda: resumed.poll() is None and sum(json.loads(run_sql(
        stack["cp_url"], "SELECT watermarks FROM moves WHERE id = $1", uuid.UUID(back))[0][0]).get(
        "copied", {}).values()) >= 12, "the resumed mover to copy on", 30)
    assert ctl.json("moves", "abort", back, "--yes")["state"] == "aborted"
    assert resumed.wait(30) == 1
    ctl.json("moves", "abort", back, "--yes")
    _assert_tenant_moved(w["http"].get("/api/ledgers"))
    new = httpx.Client(base_url=stack["cells"]["cli-2"].url, auth=(tenant, w["secret"]), timeout=10)
    assert new.post("/api/ledger_transactions", json=_transfer(w["ledger"], w["accounts"], 5)).status_code == 201
    assert _state_in(source.database_url, tenant) == "moved_out"
    assert ctl.json("verify", "--tenant", tenant, "--unapplied-age-max-s", "0")["violations"] == []
    assert ctl.json("verify", "--cell", "cli-1", "--unapplied-age-max-s", "0")["violations"] == []


def test_an_abort_or_purge_that_would_be_refused_shows_no_plan_and_asks_nothing(ctl, stack):
    """Past its flip a move cannot be aborted, nor purged once its tenant is back on its source: ledgerctl says so
    at once, never showing a plan that would delete the copy the tenant lives on, nor asking for it to be typed back."""
    tenant, *_ = tenant_books(ctl, stack, "cli-1", "mvq")
    away = ctl.json("tenants", "move", tenant, "--to", "cli-2", "--yes")
    ctl.json("tenants", "move", tenant, "--to", "cli-1", "--yes")  # back: `away`'s source is where it lives
    for command, code in (("abort", "move_past_flip"), ("purge", "tenant_on_source")):
        refused = ctl("moves", command, away["id"], input=f"{tenant}\n", expect=1)
        assert f"[{code}]" in refused.stderr, refused.stderr
        assert "Plan:" not in refused.stderr and "Type " not in refused.stderr, refused.stderr
    assert ctl.json("tenants", "show", tenant)["cell"] == "cli-1"


@contextlib.asynccontextmanager
async def _mover_held_in_a_batch(stack, cp, tenant: str):
    """A mover of `tenant` to cli-2 whose batch of entries waits on the target (a lock held there, as a slow target
    would hold it): (the lock's holder, the mover's process, the move's id), the lock released on leaving."""
    async with holding(stack["cells"]["cli-2"].database_url, "LOCK TABLE ledger_entries IN SHARE MODE") as held:
        mover = await spawn_async(stack, "tenants", "move", tenant, "--to", "cli-2", "--yes", move_batch_rows="3")
        await until(lambda: held.queued(mover, '%INSERT INTO "ledger_entries"%'),
                    "the mover's batch of entries to wait on the target")
        yield held, mover, str(await cp.fetchval("SELECT id FROM moves WHERE tenant_id = $1", tenant))


def test_an_abort_while_the_mover_writes_a_batch_on_the_target_leaves_nothing_there(ctl, stack):
    """An abort while a live mover's batch is being written on the target (held there by a lock here, as a slow
    target would hold it): the abort waits for the mover to stop, then deletes the copy whole: the target keeps
    nothing of the tenant, and a move there later is complete. (Before: the abort deleted the copy while the batch
    was in flight; the batch committed after it, and its rows stayed on the target.)"""
    w = _world(ctl, stack, postings=8)
    tenant, source, target = w["tenant"], stack["cells"]["cli-1"], stack["cells"]["cli-2"]
    before = _rows(source.database_url, tenant)

    async def go():
        cp = await asyncpg.connect(stack["cp_url"])
        try:
            async with _mover_held_in_a_batch(stack, cp, tenant) as (held, mover, move_id):
                abort = await spawn_async(stack, "moves", "abort", move_id, "--yes")

                async def waiting() -> bool:  # for the mover to stop, or (before) to delete on the target
                    return abort.returncode is not None or await held.waiters("%DELETE FROM%") > 0 or \
                        await cp.fetchval("SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = "
                                          "current_database() AND pid <> pg_backend_pid() AND query LIKE '%pg_try_advisory_lock(%'")
                await until(waiting, "the abort to wait")
            return await finished(abort), await finished(mover)
        finally:
            await cp.close()

    (rc, aborted), (mover_rc, stopped) = asyncio.run(go())
    assert (rc, aborted["state"]) == (0, "aborted"), aborted
    assert (mover_rc, stopped["code"]) == (1, "move_stopped"), stopped
    assert {name: n for name, n in _rows(target.database_url, tenant).items() if n} == {}
    posted = w["http"].post("/api/ledger_transactions", json=_transfer(w["ledger"], w["accounts"], 9))
    assert posted.status_code == 201, posted.text  # the source serves the tenant, active
    expected = _rows(source.database_url, tenant)
    moved = ctl.json("tenants", "move", tenant, "--to", "cli-2", "--yes")
    assert moved["state"] == "done" and moved["verification"]["ok"] and moved["post_verify"]["ok"], moved
    assert _rows(target.database_url, tenant) == expected


def test_an_abort_whose_mover_does_not_stop_in_time_says_so_and_a_second_abort_finishes(ctl, stack):
    """A mover stuck in a batch on the target past the abort's wait (5 s): the abort exits 1 move_busy naming the
    abort to run again, the move aborted and nothing deleted under the stuck batch; once the mover stops, the second
    abort deletes the copy whole and the source serves the tenant."""
    w = _world(ctl, stack, postings=4)
    tenant, target = w["tenant"], stack["cells"]["cli-2"]

    async def go():
        cp = await asyncpg.connect(stack["cp_url"])
        try:
            async with _mover_held_in_a_batch(stack, cp, tenant) as (_, mover, move_id):
                refused = await finished(await spawn_async(stack, "moves", "abort", move_id, "--yes"))
                state = await cp.fetchval("SELECT state FROM moves WHERE id = $1::uuid", move_id)
            return move_id, refused, state, await finished(mover)
        finally:
            await cp.close()

    move_id, (rc, refused), state, (mover_rc, stopped) = asyncio.run(go())
    assert (rc, refused["code"]) == (1, "move_busy") and f"moves abort {move_id}" in refused["title"], refused
    assert state == "aborted"
    assert (mover_rc, stopped["code"]) == (1, "move_stopped"), stopped
    assert ctl.json("moves", "abort", move_id, "--yes")["state"] == "aborted"
    assert {name: n for name, n in _rows(target.database_url, tenant).items() if n} == {}
    assert w["http"].post("/api/ledger_transactions", json=_transfer(w["ledger"], w["accounts"], 9)).status_code == 201
