"""Every ledgerctl command through its click entry point, against real databases and real cells."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import redis

from control_plane.devstack import free_port


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run_sql(url: str, query: str, *args):
    import asyncio

    async def go():
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


# ---- migrate, cells ----------------------------------------------------------------------------------------

def test_migrate_is_idempotent(ctl):
    assert ctl.json("migrate") == {"applied": []}


def test_commands_refuse_an_unmigrated_catalog(stack):
    from cli_rig import Ledgerctl

    fresh = Ledgerctl({**stack["env"], "CONTROL_PLANE_DATABASE_URL": stack["make_database"](
        f"cp_empty_{uuid.uuid4().hex[:6]}", migrate_cell=False)})
    assert fresh.json("cells", "list", expect=1)["code"] == "catalog_not_migrated"
    assert fresh.json("migrate")["applied"] == ["0001_catalog", "0080_audit_anchors", "0081_tenant_creating"]
    assert fresh.json("cells", "list") == []


def test_no_database_url_is_a_clear_error(stack):
    from cli_rig import Ledgerctl

    ctl = Ledgerctl({"CONTROL_PLANE_DATABASE_URL": None})
    result = ctl("cells", "list", expect=1)
    assert "CONTROL_PLANE_DATABASE_URL" in result.stderr


def test_cells_list_and_show(ctl, stack):
    cells = {c["name"]: c for c in ctl.json("cells", "list")}
    assert set(stack["cells"]) <= set(cells)
    assert all("database_url" not in c for c in cells.values())  # it may carry a password
    shown = ctl.json("cells", "show", "cli-1")
    assert (shown["name"], shown["api_url"], shown["api"], shown["state"]) == (
        "cli-1", stack["cells"]["cli-1"].url, "ok", "active")
    pretty = ctl("cells", "list").stdout
    assert pretty.splitlines()[0].split()[:3] == ["NAME", "STATE", "TENANTS"]
    assert "cli-2" in pretty


def test_cells_add_errors(ctl, stack):
    cell = stack["cells"]["cli-1"]
    duplicate = ctl.json("cells", "add", "cli-1", "--api-url", cell.url, "--database-url", cell.database_url,
                         expect=1)
    assert duplicate["code"] == "duplicate_cell"
    unreachable = ctl.json("cells", "add", "cli-nowhere", "--api-url", f"http://127.0.0.1:{free_port()}",
                           "--database-url", cell.database_url, expect=4)
    assert unreachable["code"] == "cell_unreachable"
    bad_db = ctl.json("cells", "add", "cli-bad-db", "--api-url", cell.url, "--database-url",
                      f"postgresql://postgres@127.0.0.1:{free_port()}/none", expect=4)
    assert bad_db["code"] == "database_unreachable"
    assert ctl.json("cells", "add", "Not_A_Name", "--api-url", cell.url, "--database-url", cell.database_url,
                    expect=1)["code"] == "invalid_cell_name"
    assert ctl.json("cells", "show", "no-such-cell", expect=1)["code"] == "unknown_cell"
    assert "no-such-cell" in ctl("cells", "show", "no-such-cell", expect=1).stderr
    # A URL that is no URL is the operator's mistake (exit 1, a stable code), not a traceback; with --no-check too:
    # the routers would send the cell's tenants' requests to it.
    for bad in ("cell-1.internal:8101", "http://[::1", "ftp://127.0.0.1/", "http://", "http://127.0.0.1:99999",
                "http://ops:pw-s3cret@127.0.0.1:8101"):
        for check in ((), ("--no-check",)):
            refused = ctl.json("cells", "add", "cli-bad-api", "--api-url", bad, "--database-url", cell.database_url,
                               *check, expect=1)
            assert refused["code"] == "invalid_api_url", (bad, refused)
            assert "pw-s3cret" not in json.dumps(refused)
    for bad in ("cli_cell_1", "postgresql://u@127.0.0.1:abc/db", "postgresql://u@[::1/db",
                "postgresql://u@127.0.0.1/db?sslmode=bogus"):
        refused = ctl.json("cells", "add", "cli-bad-db", "--api-url", cell.url, "--database-url", bad, expect=1)
        assert refused["code"] == "invalid_database_url", (bad, refused)
    assert ctl.json("--database-url", "not-a-url", "cells", "list", expect=1)["code"] == "invalid_database_url"
    names = [c["name"] for c in ctl.json("cells", "list")]
    assert "cli-nowhere" not in names and "cli-bad-db" not in names and "cli-bad-api" not in names


def test_cells_add_migrates_the_cell_database(ctl, stack):
    """--no-check registers a cell whose API is not up yet; its database is migrated all the same."""
    db_url = stack["make_database"](f"cli_cell_new_{uuid.uuid4().hex[:6]}", migrate_cell=False)
    name = f"cli-new-{uuid.uuid4().hex[:4]}"
    added = ctl.json("cells", "add", name, "--api-url", "http://127.0.0.1:1", "--database-url", db_url,
                     "--no-check")
    assert (added["name"], added["tenants"]) == (name, 0)
    assert run_sql(db_url, "SELECT count(*) AS n FROM schema_migrations")[0]["n"] >= 1
    # Keep it out of the least-loaded placement of the other tests: nothing serves it.
    run_sql(stack["cp_url"], "UPDATE cells SET state = 'disabled' WHERE name = $1", name)


def test_a_database_failing_under_a_command_is_exit_4_with_what_to_do(stack):
    """The control-plane database takes no writes (a failover under way): a write is refused by PostgreSQL itself;
    ledgerctl says so with its stable code and exit 4 (a dependency unavailable), not a traceback; reads still work,
    and once it takes writes the same command goes through."""
    from cli_rig import Ledgerctl

    name = f"cp_ro_{uuid.uuid4().hex[:6]}"
    fresh = Ledgerctl({**stack["env"], "CONTROL_PLANE_DATABASE_URL": stack["make_database"](name, migrate_cell=False)})
    fresh("migrate")
    db_url = stack["make_database"](f"cli_cell_ro_{uuid.uuid4().hex[:6]}", migrate_cell=False)
    add = ("cells", "add", "cli-ro", "--api-url", "http://127.0.0.1:1", "--database-url", db_url, "--no-check")
    server = stack["cp_url"].rsplit("/", 1)[0] + "/postgres"
    run_sql(server, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    try:
        failed = fresh.json(*add, expect=4)
        assert failed["code"] == "database_failed" and "read-only" in failed["title"], failed
        assert "Traceback" not in fresh(*add, expect=4).stderr
        assert fresh.json("cells", "list") == []
    finally:
        run_sql(server, f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    assert fresh.json(*add)["name"] == "cli-ro"


# ---- tenants -----------------------------------------------------------------------------------------------

def test_tenants_create_places_on_the_least_loaded_cell(ctl):
    def load() -> dict[str, int]:
        return {c["name"]: c["tenants"] for c in ctl.json("cells", "list") if c["state"] == "active"}

    # Make the loads unequal first, so that only one cell is the least loaded.
    fullest = max(load().items(), key=lambda item: (item[1], item[0]))[0]
    ctl("tenants", "create", new_id(), "--cell", fullest)
    before = load()
    emptiest = min(before, key=lambda name: (before[name], name))
    assert before[emptiest] < before[fullest]
    tenant = ctl.json("tenants", "create", new_id(), "--name", "Acme")
    assert tenant["cell"] == emptiest
    assert (tenant["state"], tenant["epoch"], tenant["published"]) == ("active", 1, True)
    after = load()
    assert after[emptiest] == before[emptiest] + 1


def test_tenants_create_on_a_named_cell_show_and_list(ctl, stack):
    tenant_id = new_id()
    created = ctl.json("tenants", "create", tenant_id, "--cell", "cli-2", "--name", "Named")
    assert created["cell"] == "cli-2"
    shown = ctl.json("tenants", "show", tenant_id)
    assert (shown["id"], shown["name"], shown["cell"], shown["state_in_cell"], shown["api_keys_live"]) == (
        tenant_id, "Named", "cli-2", "active", 0)
    listed = [t["id"] for t in ctl.json("tenants", "list", "--cell", "cli-2", "--limit", "1000")]
    assert tenant_id in listed
    assert tenant_id not in [t["id"] for t in ctl.json("tenants", "list", "--cell", "cli-1", "--limit", "1000")]
    page = ctl.json("tenants", "list", "--after", tenant_id, "--limit", "1000")
    assert all(t["id"] > tenant_id for t in page)
    # The tenant exists in its cell: the cell itself says so.
    rows = run_sql(stack["cells"]["cli-2"].database_url, "SELECT state FROM tenants WHERE id = $1", tenant_id)
    assert [r["state"] for r in rows] == ["active"]
    assert tenant_id in ctl("tenants", "show", tenant_id).stdout


def test_an_argument_that_is_not_utf8_is_an_operator_error(ctl):
    # A shell passes any bytes (`ledgerctl tenants show $'\xff'`); Python keeps the undecodable ones as surrogates.
    for args in (("tenants", "show", "t-\udcff"), ("tenants", "list", "--after", "\udcff"),
                 ("moves", "list", "--tenant", "\udcff"), ("audit", "--subject", "tenant:\udcff"),
                 ("keys", "list", "\udcff")):
        refused = ctl.json(*args, expect=1)
        assert refused["code"] == "invalid_arguments" and "UTF-8" in refused["title"], (args, refused)


def test_tenants_create_errors(ctl):
    tenant_id = new_id()
    ctl("tenants", "create", tenant_id)
    assert ctl.json("tenants", "create", tenant_id, expect=1)["code"] == "duplicate_tenant"
    assert "already exists" in ctl("tenants", "create", tenant_id, expect=1).stderr
    assert ctl.json("tenants", "create", new_id(), "--cell", "no-such-cell", expect=1)["code"] == "unknown_cell"
    assert ctl.json("tenants", "create", "bad id!", expect=1)["code"] == "invalid_tenant_id"
    for name in ("x" * 256, "two\nlines"):
        assert ctl.json("tenants", "create", new_id(), "--name", name, expect=1)["code"] == "invalid_tenant_name"
    assert ctl.json("tenants", "show", "no-such-tenant", expect=1)["code"] == "unknown_tenant"
    assert ctl.json("tenants", "list", "--cell", "no-such-cell", expect=1)["code"] == "unknown_cell"


def test_tenants_create_publishes_the_route(ctl, stack):
    client = redis.Redis.from_url(stack["redis_url"])
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("ledger:routes")
    try:
        tenant_id = new_id()
        created = ctl.json("tenants", "create", tenant_id)
        message = None
        deadline = time.monotonic() + 5
        while message is None and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
        assert message is not None
        assert json.loads(message["data"]) == {"tenant_id": tenant_id, "cell": created["cell"], "epoch": 1}
    finally:
        pubsub.close()
        client.close()


def test_rate_limit(ctl):
    tenant_id = new_id()
    ctl("tenants", "create", tenant_id)
    limited = ctl.json("tenants", "rate-limit", tenant_id, "--per-s", "5", "--burst", "10")
    assert (limited["rate_limit_per_s"], limited["rate_burst"]) == (5, 10)
    assert ctl.json("tenants", "show", tenant_id)["rate_limit_per_s"] == 5
    assert ctl.json("tenants", "rate-limit", tenant_id, "--per-s", "7")["rate_burst"] == 7
    cleared = ctl.json("tenants", "rate-limit", tenant_id, "--default")
    assert (cleared["rate_limit_per_s"], cleared["rate_burst"]) == (None, None)
    assert ctl.json("tenants", "rate-limit", tenant_id, "--per-s", "0", expect=1)["code"] == "invalid_rate_limit"
    assert ctl.json("tenants", "rate-limit", tenant_id, expect=1)["code"] == "invalid_rate_limit"
    assert ctl.json("tenants", "rate-limit", "no-such-tenant", "--per-s", "3", expect=1)["code"] == "unknown_tenant"


# ---- keys --------------------------------------------------------------------------------------------------

def _status(cell_url: str, tenant_id: str, secret: str) -> int:
    return httpx.get(cell_url + "/api/ledgers", auth=(tenant_id, secret), timeout=5).status_code


def test_keys_create_list_revoke(ctl, stack):
    tenant_id = new_id()
    cell = stack["cells"][ctl.json("tenants", "create", tenant_id)["cell"]]
    created = ctl.json("keys", "create", tenant_id)
    secret, key_id = created["secret"], created["id"]
    assert _status(cell.url, tenant_id, secret) == 200
    pretty = ctl("keys", "create", tenant_id)
    assert "secret" in pretty.stdout and "cannot be shown again" in pretty.stderr

    listed = ctl.json("keys", "list", tenant_id)
    assert key_id in [k["id"] for k in listed]
    assert secret not in json.dumps(listed)  # a secret is shown once, at creation, never again
    assert all(k["revoked_at"] is None for k in listed)
    assert ctl.json("tenants", "show", tenant_id)["api_keys_live"] == 2

    # Destructive: the plan is shown and the tenant id must be typed back.
    refused = ctl("keys", "revoke", tenant_id, key_id, input="not-it\n", expect=1)
    assert "Plan:" in refused.stderr and key_id in refused.stderr and "not_confirmed" in refused.stderr
    assert _status(cell.url, tenant_id, secret) == 200
    revoked = ctl.json("keys", "revoke", tenant_id, key_id, input=tenant_id + "\n")
    assert revoked["revoked_at"] is not None

    deadline = time.monotonic() + 10  # the cell caches keys for CELL_API_KEY_CACHE_TTL_S (0.5 s here)
    while _status(cell.url, tenant_id, secret) != 401:
        assert time.monotonic() < deadline, "a revoked key still works"
        time.sleep(0.2)
    other = next(k for k in ctl.json("keys", "list", tenant_id) if k["id"] != key_id)
    assert ctl.json("keys", "revoke", tenant_id, other["id"], "--yes")["revoked_at"] is not None
    assert ctl.json("tenants", "show", tenant_id)["api_keys_live"] == 0


def test_keys_errors(ctl):
    tenant_id = new_id()
    ctl("tenants", "create", tenant_id)
    assert ctl.json("keys", "create", "no-such-tenant", expect=1)["code"] == "unknown_tenant"
    assert ctl.json("keys", "list", "no-such-tenant", expect=1)["code"] == "unknown_tenant"
    assert ctl.json("keys", "revoke", tenant_id, str(uuid.uuid4()), "--yes", expect=1)["code"] == "unknown_key"
    assert ctl.json("keys", "revoke", tenant_id, "not-a-uuid", "--yes", expect=1)["code"] == "unknown_key"
    # Another tenant's key id is unknown here.
    other = new_id()
    ctl("tenants", "create", other)
    other_key = ctl.json("keys", "create", other)["id"]
    assert ctl.json("keys", "revoke", tenant_id, other_key, "--yes", expect=1)["code"] == "unknown_key"


# ---- verify, audit -----------------------------------------------------------------------------------------

def _tenant_with_books(ctl, stack):
    """A new tenant with a key, a ledger and a debit-normal and a credit-normal account, through ledgerctl and
    the cell's API: (tenant id, cell, HTTP client of the tenant, ledger, [debit account, credit account])."""
    tenant_id = new_id()
    cell = stack["cells"][ctl.json("tenants", "create", tenant_id)["cell"]]
    secret = ctl.json("keys", "create", tenant_id)["secret"]
    http = httpx.Client(base_url=cell.url, auth=(tenant_id, secret))
    ledger = http.post("/api/ledgers", json={"name": "main"}).json()
    accounts = [http.post("/api/ledger_accounts", json={"name": n, "ledger_id": ledger["id"], "currency": "USD",
                                                         "normal_balance": n}).json() for n in ("debit", "credit")]
    return tenant_id, cell, http, ledger, accounts


def test_verify_passes_then_fails_on_a_corrupted_balance(ctl, stack):
    tenant_id, cell, http, ledger, accounts = _tenant_with_books(ctl, stack)
    posted = http.post("/api/ledger_transactions", json={"ledger_id": ledger["id"], "status": "posted",
                                                         "ledger_entries": [
        {"ledger_account_id": accounts[0]["id"], "direction": "debit", "amount": 250},
        {"ledger_account_id": accounts[1]["id"], "direction": "credit", "amount": 250}]})
    assert posted.status_code == 201, posted.text
    http.close()
    report = ctl.json("verify", "--tenant", tenant_id)
    assert (report["cell"], report["tenant"], report["violations"]) == (cell.name, tenant_id, [])
    # The whole cell, but for the sweeper's bound: these cells run no sweeper, and other tests' tenants (moved
    # here with queued effects, on purpose) keep theirs; the bound has a test of its own, below.
    assert ctl.json("verify", "--cell", cell.name, "--unapplied-age-max-s", "0")["violations"] == []

    run_sql(cell.database_url, "UPDATE account_balances SET posted_debits = posted_debits + 1 WHERE account_id = $1",
            uuid.UUID(accounts[0]["id"]))
    failed = ctl.json("verify", "--tenant", tenant_id, expect=3)
    assert failed["code"] == "invariants_violated" and failed["details"]["violations"]
    pretty = ctl("verify", "--tenant", tenant_id, expect=3)
    assert "invariant violation" in pretty.stderr
    run_sql(cell.database_url, "UPDATE account_balances SET posted_debits = posted_debits - 1 WHERE account_id = $1",
            uuid.UUID(accounts[0]["id"]))
    assert ctl.json("verify", "--tenant", tenant_id)["violations"] == []
    # A transaction last changed before it was posted (lists of those posted since a time read the changed since it).
    moved_back = "UPDATE ledger_transactions SET updated_at = updated_at + $2 * interval '1 hour' WHERE id = $1"
    run_sql(cell.database_url, moved_back, uuid.UUID(posted.json()["id"]), -1)
    violations = ctl.json("verify", "--tenant", tenant_id, expect=3)["details"]["violations"]
    assert [v for v in violations if posted.json()["id"] in v and "before it was written, posted" in v], violations
    assert len([v for v in violations if "after its transaction last changed" in v]) == 2, violations  # its entries
    run_sql(cell.database_url, moved_back, uuid.UUID(posted.json()["id"]), 1)
    assert ctl.json("verify", "--tenant", tenant_id)["violations"] == []
    # A transaction effective at another time than its entries (lists of entries effective in a window read those of
    # the transactions effective in it).
    backdated = "UPDATE ledger_transactions SET effective_at = effective_at + $2 * interval '1 hour' WHERE id = $1"
    run_sql(cell.database_url, backdated, uuid.UUID(posted.json()["id"]), -1)
    violations = ctl.json("verify", "--tenant", tenant_id, expect=3)["details"]["violations"]
    assert len([v for v in violations if "its transaction at" in v]) == 2, violations  # both entries
    run_sql(cell.database_url, backdated, uuid.UUID(posted.json()["id"]), 1)
    assert ctl.json("verify", "--tenant", tenant_id)["violations"] == []


def test_verify_fails_while_effects_stay_unapplied_past_the_sweepers_bound(ctl, stack):
    from cli_rig import queue_payment

    tenant_id, cell, http, ledger, accounts = _tenant_with_books(ctl, stack)
    http.close()
    queue_payment(cell.database_url, tenant_id, ledger["id"], accounts[0]["id"], accounts[1]["id"], 300)
    assert ctl.json("verify", "--tenant", tenant_id)["violations"] == []  # queued a moment ago: within the bound

    # Stuck for an hour (these cells run no sweeper): verify fails by default, with no option given.
    run_sql(cell.database_url, "UPDATE balance_effects SET created_at = created_at - interval '1 hour'"
            " WHERE tenant_id = $1 AND applied_at IS NULL", tenant_id)
    failed = ctl.json("verify", "--tenant", tenant_id, expect=3)
    assert failed["code"] == "invariants_violated"
    assert any("unapplied for more than" in v for v in failed["details"]["violations"]), failed
    assert ctl.json("verify", "--cell", cell.name, expect=3)["code"] == "invariants_violated"
    assert ctl.json("verify", "--tenant", tenant_id, "--unapplied-age-max-s", "0")["violations"] == []
    ready = httpx.get(cell.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["unapplied_age_breach"] is True
    assert ready.json()["unapplied_age_s"] > 3600 > ready.json()["unapplied_age_max_s"]

    run_sql(cell.database_url, "SELECT applied FROM ledger_apply_report($1::uuid[], false)",
            sorted(uuid.UUID(a["id"]) for a in accounts))
    assert ctl.json("verify", "--tenant", tenant_id)["violations"] == []
    # The breach is the cell's: what other tests left queued on it (no sweeper runs here) is applied as a sweeper would.
    run_sql(cell.database_url, "SELECT applied FROM ledger_apply_report(array(SELECT DISTINCT account_id FROM "
            "balance_effects WHERE applied_at IS NULL ORDER BY 1), false)")
    assert httpx.get(cell.url + "/readyz").json()["unapplied_age_breach"] is False


def test_verify_errors(ctl):
    assert ctl.json("verify", expect=1)["code"] == "invalid_arguments"
    assert ctl.json("verify", "--tenant", "x", "--cell", "y", expect=1)["code"] == "invalid_arguments"
    assert ctl.json("verify", "--tenant", "no-such-tenant", expect=1)["code"] == "unknown_tenant"
    assert ctl.json("verify", "--cell", "no-such-cell", expect=1)["code"] == "unknown_cell"


def test_audit_log_records_operator_actions(ctl):
    tenant_id = new_id()
    ctl("tenants", "create", tenant_id)
    key_id = ctl.json("keys", "create", tenant_id)["id"]
    ctl("keys", "revoke", tenant_id, key_id, "--yes")
    entries = ctl.json("audit", "--subject", f"tenant:{tenant_id}")
    assert [e["action"] for e in entries] == ["keys.revoke", "keys.create", "tenants.create"]
    assert {e["actor"] for e in entries} == {"cli-tests"}
    assert entries[0]["details"] == {"key_id": key_id}


# ---- the installed console script ----------------------------------------------------------------------------

def test_console_script(stack):
    script = [str(Path(sys.executable).parent / "ledgerctl")]  # the console script pyproject declares
    env = {**stack["env"], "PATH": "/usr/bin:/bin"}
    listed = subprocess.run([*script, "--format", "json", "cells", "list"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "cli-1" in [c["name"] for c in json.loads(listed.stdout)]
    unknown = subprocess.run([*script, "cells", "show", "no-such-cell"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert unknown.returncode == 1
    assert "error: no cell named no-such-cell [unknown_cell]" in unknown.stderr
    usage = subprocess.run([*script, "tenants", "create"], env=env, capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2
