"""ledgerctl tenants delete: a tenant left `creating` (its cell failing, or gone for good) or one that holds nothing
on its cell is removed, audited; a tenant with data (ledgers, live keys) is refused and keeps working. Commands on the
same tenant racing it serialise with it on the tenant's catalog row: one wins, the other exits 1 naming the state."""

from __future__ import annotations

import asyncio
import json

import httpx
from click.testing import CliRunner

from cli_rig import finished, holding, spawn_async, until, watching
from control_plane.cli import cli
from control_plane.devstack import free_port
from test_ledgerctl import new_id, run_sql
from test_tenant_create_faults import _allow, _homes, _refuse_tenant


def _audited(ctl, tenant_id: str) -> list[str]:
    return [e["action"] for e in ctl.json("audit", "--subject", f"tenant:{tenant_id}")]


def test_a_tenant_left_creating_is_deleted_after_the_plan_is_confirmed(ctl, stack):
    tenant_id = new_id()
    cell = stack["cells"]["cli-1"]
    trigger = _refuse_tenant(cell.database_url, tenant_id)
    try:
        ctl("tenants", "create", tenant_id, "--cell", "cli-1", expect=4)
    finally:
        _allow(cell.database_url, trigger)
    assert ctl.json("tenants", "show", tenant_id)["state"] == "creating"

    refused = ctl("tenants", "delete", tenant_id, input="not-it\n", expect=1)
    assert "Plan:" in refused.stderr and tenant_id in refused.stderr and "not_confirmed" in refused.stderr
    assert ctl.json("tenants", "show", tenant_id)["state"] == "creating"

    deleted = ctl.json("tenants", "delete", tenant_id, input=tenant_id + "\n")
    assert (deleted["id"], deleted["cell"], deleted["state"], deleted["deleted"]) == (tenant_id, "cli-1", "creating",
                                                                                      True)
    assert ctl.json("tenants", "show", tenant_id, expect=1)["code"] == "unknown_tenant"
    assert _audited(ctl, tenant_id) == ["tenants.delete", "tenants.create"]
    assert _homes(stack, tenant_id) == []
    # Its id is free again.
    assert ctl.json("tenants", "create", tenant_id, "--cell", "cli-2")["state"] == "active"


def test_a_tenant_creating_on_a_cell_gone_for_good_is_deleted_from_the_catalog(ctl, stack):
    """Its cell's database answers nothing any more: the tenant (which can own nothing yet) is removed anyway, and
    the answer says its cell was not reached."""
    tenant_id, gone = new_id(), f"gone-{new_id()[2:8]}"
    dead_url = f"postgresql://postgres@127.0.0.1:{free_port()}/gone"
    run_sql(stack["cp_url"], "INSERT INTO cells (name, api_url, database_url, state) VALUES ($1, $2, $3, 'disabled')",
            gone, f"http://127.0.0.1:{free_port()}", dead_url)
    try:
        run_sql(stack["cp_url"], "INSERT INTO tenants (id, cell, state) VALUES ($1, $2, 'creating')", tenant_id, gone)
        deleted = ctl.json("tenants", "delete", tenant_id, "--yes")
        assert (deleted["state"], deleted["deleted"]) == ("creating", True)
        assert "not reached" in deleted["cell_rows"]
        assert ctl.json("tenants", "show", tenant_id, expect=1)["code"] == "unknown_tenant"
        assert _audited(ctl, tenant_id) == ["tenants.delete"]
    finally:
        run_sql(stack["cp_url"], "DELETE FROM tenants WHERE cell = $1", gone)
        run_sql(stack["cp_url"], "DELETE FROM cells WHERE name = $1", gone)


def test_a_tenant_with_data_is_never_deleted_and_an_empty_one_is(ctl, stack):
    tenant_id = new_id()
    cell = stack["cells"][ctl.json("tenants", "create", tenant_id)["cell"]]
    key = ctl.json("keys", "create", tenant_id)
    # A live key: in use, refused.
    in_use = ctl.json("tenants", "delete", tenant_id, "--yes", expect=1)
    assert in_use["code"] == "tenant_not_empty" and "api_keys" in in_use["title"], in_use
    http = httpx.Client(base_url=cell.url, auth=(tenant_id, key["secret"]))
    assert http.post("/api/ledgers", json={"name": "books"}).status_code == 201
    ctl("keys", "revoke", tenant_id, key["id"], "--yes")
    # A ledger: refused, with or without live keys; nothing changed.
    with_books = ctl.json("tenants", "delete", tenant_id, "--yes", expect=1)
    assert with_books["code"] == "tenant_not_empty" and "ledgers" in with_books["title"], with_books
    assert ctl.json("tenants", "show", tenant_id)["state_in_cell"] == "active"
    assert "tenants.delete" not in _audited(ctl, tenant_id)

    empty = new_id()
    ctl("tenants", "create", empty, "--cell", "cli-1")
    revoked = ctl.json("keys", "create", empty)
    ctl("keys", "revoke", empty, revoked["id"], "--yes")  # a revoked key is no data: it goes with the tenant
    deleted = ctl.json("tenants", "delete", empty, "--yes")
    assert (deleted["state"], deleted["deleted"], deleted["cell_rows"]) == ("active", True,
                                                                            {"tenants": 1, "api_keys": 1})
    assert _homes(stack, empty) == []
    assert ctl.json("tenants", "show", empty, expect=1)["code"] == "unknown_tenant"
    assert _audited(ctl, empty)[0] == "tenants.delete"
    # No row left on the cell that the catalog does not know.
    verified = ctl.json("verify", "--cell", "cli-1", "--unapplied-age-max-s", "0")
    assert not [v for v in verified["violations"] if empty in v]


def test_deleting_an_unknown_tenant_is_an_operator_error(ctl):
    assert ctl.json("tenants", "delete", "no-such-tenant", "--yes", expect=1)["code"] == "unknown_tenant"


def _left_creating(ctl, stack, cell_name: str) -> str:
    """A tenant whose create failed half-way (its cell refused the row): `creating` in the catalog, nowhere else."""
    tenant_id, cell = new_id(), stack["cells"][cell_name]
    trigger = _refuse_tenant(cell.database_url, tenant_id)
    try:
        ctl("tenants", "create", tenant_id, "--cell", cell_name, expect=4)
    finally:
        _allow(cell.database_url, trigger)
    return tenant_id


def _no_orphan(ctl, tenant_id: str, cell_name: str) -> None:
    """`verify --cell` names no row of the tenant that the catalog does not know (other tenants may have findings)."""
    result = CliRunner().invoke(cli, ["--format", "json", "verify", "--cell", cell_name, "--unapplied-age-max-s", "0"],
                                env=ctl.env, catch_exceptions=False)
    assert result.exit_code in (0, 3), result.stderr
    report = json.loads(result.stdout) if result.exit_code == 0 else json.loads(result.stderr.splitlines()[-1])
    violations = report["violations"] if result.exit_code == 0 else report["details"]["violations"]
    assert [v for v in violations if tenant_id in v] == [], violations


def test_a_create_finishing_a_creating_tenant_and_its_delete_serialise_on_the_catalog(ctl, stack):
    """`tenants create X` finishing a tenant left `creating` is held while it writes X's row on its cell (a lock
    another session holds on the cell's tenants table); meanwhile `tenants delete X` runs. One of them wins, the
    other exits 1 naming the state it found; no row is left on the cell that the catalog does not know."""
    cell_name = "cli-1"
    cell = stack["cells"][cell_name]
    tenant_id = _left_creating(ctl, stack, cell_name)

    async def go():
        async with holding(cell.database_url, "LOCK TABLE tenants IN SHARE ROW EXCLUSIVE MODE") as held, \
                watching(stack["cp_url"]) as catalog:
            create = await spawn_async(stack, "tenants", "create", tenant_id)
            await until(lambda: held.queued(create, "%INSERT INTO tenants%"),
                        "the create to write the tenant's row on the cell")
            delete = await spawn_async(stack, "tenants", "delete", tenant_id, "--yes")
            await until(lambda: catalog.queued(delete, "%FROM tenants%FOR UPDATE%", may_end=True),
                        "the delete to end or to wait for the create's catalog row")
            await held.release()
            return await finished(create), await finished(delete)

    (create_rc, created), (delete_rc, deleted) = asyncio.run(go())
    # The create held the catalog row first: it wins; the delete, planned for a `creating` tenant, finds it active.
    assert (create_rc, created["state"]) == (0, "active"), created
    assert (delete_rc, deleted["code"]) == (1, "tenant_changed") and "is active now" in deleted["title"], deleted
    assert _homes(stack, tenant_id) == [cell_name]
    assert ctl.json("tenants", "show", tenant_id)["state_in_cell"] == "active"
    _no_orphan(ctl, tenant_id, cell_name)


def test_a_delete_holding_the_catalog_row_first_wins_over_the_create_finishing_it(ctl, stack):
    """The other order: `tenants delete X` of a tenant left `creating` takes X's catalog row first (held meanwhile by
    another session, so that the create then queues behind it), and `tenants create X` comes next. The delete wins;
    the create exits 1 `tenant_deleted`, nothing created on the cell."""
    cell_name = "cli-1"
    tenant_id = _left_creating(ctl, stack, cell_name)

    async def go():
        async with holding(stack["cp_url"], "SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", tenant_id) as held:
            delete = await spawn_async(stack, "tenants", "delete", tenant_id, "--yes")
            await until(lambda: held.queued(delete, "%FROM tenants%FOR UPDATE%"),
                        "the delete to wait for the tenant's catalog row")
            create = await spawn_async(stack, "tenants", "create", tenant_id)
            await until(lambda: held.queued(create, "%tenants%", 2, may_end=True),
                        "the create to end or to wait for the same row")
            await held.release()
            deleted = await finished(delete)
            return await finished(create), deleted

    (create_rc, created), (delete_rc, deleted) = asyncio.run(go())
    assert (delete_rc, deleted["state"], deleted["deleted"]) == (0, "creating", True), deleted
    assert (create_rc, created["code"]) == (1, "tenant_deleted") and "was deleted" in created["title"], created
    assert _homes(stack, tenant_id) == []
    assert ctl.json("tenants", "show", tenant_id, expect=1)["code"] == "unknown_tenant"
    _no_orphan(ctl, tenant_id, cell_name)



def test_a_move_planned_before_its_tenant_is_deleted_is_refused_cleanly(ctl, stack):
    """`tenants move X` has planned its move and is held as it records it (another session holds the target cell's
    catalog row, which start_move locks first); meanwhile `tenants delete X` removes X, an empty tenant. The move
    then exits 1 naming the deletion, one line, no traceback; nothing is recorded or copied."""
    tenant_id = new_id()
    ctl("tenants", "create", tenant_id, "--cell", "cli-1")

    async def go():
        async with holding(stack["cp_url"], "SELECT 1 FROM cells WHERE name = 'cli-2' FOR UPDATE") as held:
            move = await spawn_async(stack, "tenants", "move", tenant_id, "--to", "cli-2", "--yes")
            await until(lambda: held.queued(move, "%FROM cells%FOR SHARE%"), "the move to record itself")
            deleted = await finished(await spawn_async(stack, "tenants", "delete", tenant_id, "--yes"))
            await held.release()
            return await finished(move), deleted

    (move_rc, moved), (delete_rc, deleted) = asyncio.run(go())
    assert (delete_rc, deleted["deleted"]) == (0, True), deleted
    assert (move_rc, moved["code"]) == (1, "tenant_deleted") and "was deleted" in moved["title"], moved
    assert ctl.json("moves", "list", "--tenant", tenant_id) == []
    assert _homes(stack, tenant_id) == []



def test_a_rate_limit_set_while_its_tenant_is_deleted_is_refused_cleanly(ctl, stack):
    """`tenants delete X` has deleted X's catalog row and is held before it commits (another session holds the audit
    log); `tenants rate-limit X` then waits for the row. Once the delete commits, the rate limit exits 1 naming the
    tenant as unknown, one line, no traceback, and the audit log records no rate limit for the deleted tenant."""
    tenant_id = new_id()
    ctl("tenants", "create", tenant_id, "--cell", "cli-1")

    async def go():
        async with holding(stack["cp_url"], "LOCK TABLE operator_audit IN SHARE MODE") as held:
            delete = await spawn_async(stack, "tenants", "delete", tenant_id, "--yes")
            await until(lambda: held.queued(delete, "%INSERT INTO operator_audit%"), "the delete to audit itself")
            limit = await spawn_async(stack, "tenants", "rate-limit", tenant_id, "--per-s", "10")
            await until(lambda: held.queued(limit, "%tenants%", may_end=True),
                        "the rate limit to end or to wait for the tenant's row")
            await held.release()
            deleted = await finished(delete)
            return await finished(limit), deleted

    (limit_rc, limited), (delete_rc, deleted) = asyncio.run(go())
    assert (delete_rc, deleted["deleted"]) == (0, True), deleted
    assert (limit_rc, limited["code"]) == (1, "unknown_tenant") and tenant_id in limited["title"], limited
    assert "tenants.rate_limit" not in _audited(ctl, tenant_id)
