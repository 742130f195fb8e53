"""ledgerctl tenants create (and keys create) under faults: the catalog or the cell failing half-way, a drain racing
it. A tenant ends in exactly one home the catalog knows, or nowhere; never a row in a cell that no route points at."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
from click.testing import CliRunner

from cli_rig import finished, holding, spawn_async, until, wait_until, watching
from control_plane.cli import cli
from test_cells_drain import third_cell  # noqa: F401  (a fixture)
from test_ledgerctl import new_id, run_sql

DISK_FULL = "RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = '53100'"


def _refuse_tenant(url: str, tenant_id: str) -> str:
    """A trigger that fails the insert of this tenant's row as a full disk would; returns its name (to drop)."""
    name = f"refuse_{uuid.uuid4().hex[:8]}"
    run_sql(url, f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                 f"IF NEW.id = '{tenant_id}' THEN {DISK_FULL}; END IF; RETURN NEW; END $$")
    run_sql(url, f"CREATE TRIGGER {name} BEFORE INSERT ON tenants FOR EACH ROW EXECUTE FUNCTION {name}()")
    return name


def _allow(url: str, name: str) -> None:
    run_sql(url, f"DROP TRIGGER {name} ON tenants")
    run_sql(url, f"DROP FUNCTION {name}()")


def _homes(stack, tenant_id: str) -> list[str]:
    """The cells holding a row of the tenant."""
    return sorted(name for name, cell in stack["cells"].items()
                  if run_sql(cell.database_url, "SELECT 1 FROM tenants WHERE id = $1", tenant_id))


def test_a_create_the_catalog_fails_leaves_no_tenant_on_the_cell(ctl, stack):
    """The catalog's insert fails (its disk full) after the cell was reached: exit 4, and nothing is left on the
    cell that the catalog does not know (an orphan: its id taken there, no key could ever be issued for it). Once
    the catalog is back the same command creates it, in one home."""
    tenant_id = new_id()
    trigger = _refuse_tenant(stack["cp_url"], tenant_id)
    try:
        failed = ctl.json("tenants", "create", tenant_id, "--cell", "cli-1", expect=4)
        assert failed["code"] == "database_failed", failed
    finally:
        _allow(stack["cp_url"], trigger)
    assert ctl.json("tenants", "show", tenant_id, expect=1)["code"] == "unknown_tenant"
    assert _homes(stack, tenant_id) == []
    created = ctl.json("tenants", "create", tenant_id, "--cell", "cli-1")
    assert (created["cell"], created["state"]) == ("cli-1", "active")
    assert _homes(stack, tenant_id) == ["cli-1"]
    assert ctl.json("keys", "create", tenant_id)["secret"]


def test_a_create_the_cell_fails_is_finished_by_running_it_again_in_the_same_home(ctl, stack):
    """The cell's database refuses the tenant's row (its disk full): exit 4, the tenant is listed as `creating` on
    that cell, and running the same command again finishes it there, though another cell is the least loaded by
    then (a second home for one name is never made)."""
    tenant_id = new_id()
    cell = stack["cells"]["cli-1"]
    trigger = _refuse_tenant(cell.database_url, tenant_id)
    try:
        failed = ctl.json("tenants", "create", tenant_id, "--cell", "cli-1", expect=4)
        assert failed["code"] == "database_failed", failed
        assert "run it again" in failed["title"]
        listed = {t["id"]: t for t in ctl.json("tenants", "list", "--cell", "cli-1", "--limit", "10000")}
        assert listed[tenant_id]["state"] == "creating"
        assert ctl.json("keys", "create", tenant_id, expect=1)["code"] == "tenant_creating"
        assert ctl.json("tenants", "create", tenant_id, "--cell", "cli-2", expect=1)["code"] == "duplicate_tenant"
    finally:
        _allow(cell.database_url, trigger)
    # cli-1 the fuller of the two now: the rerun still finishes the tenant where it was placed.
    loads = {c["name"]: c["tenants"] for c in ctl.json("cells", "list")}
    for _ in range(loads["cli-2"] - loads["cli-1"] + 1):
        ctl("tenants", "create", new_id(), "--cell", "cli-1")
    created = ctl.json("tenants", "create", tenant_id)
    assert (created["cell"], created["state"]) == ("cli-1", "active")
    assert _homes(stack, tenant_id) == ["cli-1"]
    assert ctl.json("keys", "create", tenant_id)["secret"]
    assert ctl.json("tenants", "create", tenant_id, expect=1)["code"] == "duplicate_tenant"


def test_a_create_racing_a_drain_leaves_no_tenant_on_the_drained_cell(ctl, stack, third_cell):  # noqa: F811
    """`tenants create --cell C` is held while it writes the tenant's row on C (a lock another session holds on
    C's tenants table); meanwhile `cells drain C` runs. Whatever the order, once both end the drain has not left
    the new tenant behind on the draining cell: it lives on an active cell, with exactly one home."""
    name, tenant_id = third_cell.name, new_id()

    async def go():
        async with holding(third_cell.database_url, "LOCK TABLE tenants IN SHARE ROW EXCLUSIVE MODE") as held, \
                watching(stack["cp_url"]) as catalog:
            create = await spawn_async(stack, "tenants", "create", tenant_id, "--cell", name)
            await until(lambda: held.queued(create, "%INSERT INTO tenants%"),
                        "the create to write the tenant's row on the cell")
            drain = await spawn_async(stack, "cells", "drain", name, "--yes")

            async def drain_ended_or_waits() -> bool:  # for the tenant's row: on the cell, or its catalog row
                return (await held.queued(drain, "%INSERT INTO tenants%", 2, may_end=True)
                        or await catalog.waiters("%FROM tenants%FOR NO KEY UPDATE%") >= 1)

            await until(drain_ended_or_waits, "the drain to end or to wait for the same row")
            await held.release()
            return await finished(create), await finished(drain)

    (create_rc, created), (drain_rc, result) = asyncio.run(go())
    assert create_rc == 0, created
    assert drain_rc == 0, result
    assert (result["state"], result["tenants_left"]) == ("draining", 0), result
    tenant = ctl.json("tenants", "show", tenant_id)
    assert tenant["cell"] != name and tenant["state_in_cell"] == "active", tenant
    assert ctl.json("tenants", "list", "--cell", name) == []
    assert [t for t in _homes(stack, tenant_id) if t != name] == [tenant["cell"]]
    assert ctl.json("keys", "create", tenant_id)["secret"]


def test_verify_reports_a_tenant_row_the_catalog_does_not_know(ctl, stack):
    """A tenant row on a cell with no catalog row (an orphan an older ledgerctl left when its catalog insert failed):
    `verify --cell` exits 3 naming it and how to repair it; `tenants create --cell` adopts it, and verify passes."""
    tenant_id, cell = new_id("orphan"), stack["cells"]["cli-1"]
    run_sql(cell.database_url, "INSERT INTO tenants (id, name) VALUES ($1, 'left behind')", tenant_id)
    failed = ctl.json("verify", "--cell", "cli-1", "--unapplied-age-max-s", "0", expect=3)
    assert failed["code"] == "invariants_violated"
    found = [v for v in failed["details"]["violations"] if tenant_id in v]
    assert len(found) == 1 and "catalog does not know" in found[0] and "tenants create" in found[0], found
    assert ctl.json("tenants", "create", tenant_id, "--cell", "cli-1")["state"] == "active"
    assert ctl.json("verify", "--cell", "cli-1", "--unapplied-age-max-s", "0")["violations"] == []
    assert _homes(stack, tenant_id) == ["cli-1"]


def test_a_key_whose_creation_the_catalog_fails_to_record_is_not_left_live(ctl, stack):
    """The key is written on the cell, then the catalog fails to record it in the operator audit log (its disk full):
    exit 4, the secret never shown, and no live key is left behind that nobody holds and no audit entry names."""
    tenant_id = new_id()
    ctl("tenants", "create", tenant_id)
    name = f"refuse_{uuid.uuid4().hex[:8]}"
    run_sql(stack["cp_url"], f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                             f"IF NEW.subject = 'tenant:{tenant_id}' AND NEW.action = 'keys.create' THEN {DISK_FULL};"
                             " END IF; RETURN NEW; END $$")
    run_sql(stack["cp_url"], f"CREATE TRIGGER {name} BEFORE INSERT ON operator_audit FOR EACH ROW EXECUTE FUNCTION "
                             f"{name}()")
    try:
        failed = ctl("--format", "json", "keys", "create", tenant_id, expect=4)
        assert failed.stdout == "" and json.loads(failed.stderr.splitlines()[-1])["code"] == "database_out_of_resources"
    finally:
        run_sql(stack["cp_url"], f"DROP TRIGGER {name} ON operator_audit")
        run_sql(stack["cp_url"], f"DROP FUNCTION {name}()")
    assert [k for k in ctl.json("keys", "list", tenant_id) if k["revoked_at"] is None] == []
    created = ctl.json("keys", "create", tenant_id)
    assert [k["id"] for k in ctl.json("keys", "list", tenant_id) if k["revoked_at"] is None] == [created["id"]]


def _refuse_audit(url: str, tenant_id: str, action: str) -> str:
    """A trigger that fails the operator audit entry of this tenant and action as a full disk would (to drop)."""
    name = f"refuse_{uuid.uuid4().hex[:8]}"
    run_sql(url, f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                 f"IF NEW.subject = 'tenant:{tenant_id}' AND NEW.action = '{action}' THEN {DISK_FULL};"
                 " END IF; RETURN NEW; END $$")
    run_sql(url, f"CREATE TRIGGER {name} BEFORE INSERT ON operator_audit FOR EACH ROW EXECUTE FUNCTION {name}()")
    return name


def _drop_trigger(url: str, name: str, table: str) -> None:
    run_sql(url, f"DROP TRIGGER {name} ON {table}")
    run_sql(url, f"DROP FUNCTION {name}()")


def test_a_revocation_the_audit_log_fails_to_record_stands_and_a_rerun_records_it_once(ctl, stack):
    """The key is revoked on its cell, then the catalog fails to record it in the operator audit log (its disk full):
    the revocation stands (security first), the command exits 4 saying the key is revoked and that running it again
    records the entry; the rerun records it, and a further rerun records nothing more: one entry per revocation."""
    tenant_id = new_id()
    cell = stack["cells"][ctl.json("tenants", "create", tenant_id)["cell"]]
    created = ctl.json("keys", "create", tenant_id)
    trigger = _refuse_audit(stack["cp_url"], tenant_id, "keys.revoke")
    try:
        failed = ctl.json("keys", "revoke", tenant_id, created["id"], "--yes", expect=4)
    finally:
        _drop_trigger(stack["cp_url"], trigger, "operator_audit")
    assert failed["code"] == "revocation_not_audited", failed
    assert "is revoked" in failed["title"] and f"ledgerctl keys revoke {tenant_id} {created['id']}" in failed["title"]
    [key] = ctl.json("keys", "list", tenant_id)
    assert key["revoked_at"] is not None
    # The cell caches keys for CELL_API_KEY_CACHE_TTL_S (0.5 s here).
    wait_until(lambda: httpx.get(cell.url + "/api/ledgers", auth=(tenant_id, created["secret"]), timeout=5)
               .status_code == 401, "the revoked key to be refused", 10)

    def revocations() -> list[dict]:
        return [e for e in ctl.json("audit", "--subject", f"tenant:{tenant_id}") if e["action"] == "keys.revoke"]

    assert revocations() == []
    rerun = ctl.json("keys", "revoke", tenant_id, created["id"])  # nothing left to confirm: the key is revoked
    assert rerun["revoked_at"] == key["revoked_at"]
    assert [e["details"]["key_id"] for e in revocations()] == [created["id"]]
    ctl.json("keys", "revoke", tenant_id, created["id"], "--yes")
    assert len(revocations()) == 1


def test_verify_flags_a_tenant_creating_past_the_bound_with_the_command_that_finishes_it(ctl, stack):
    """A create that failed half-way leaves a tenant `creating`: within CONTROL_PLANE_TENANT_CREATING_AGE_MAX_S
    (600 s) it is a create in flight, past it `verify` (of its cell, or of it) exits 3 naming it and the command
    that finishes it; once finished, verify passes."""
    tenant_id, cell = new_id(), stack["cells"]["cli-1"]
    trigger = _refuse_tenant(cell.database_url, tenant_id)
    try:
        ctl("tenants", "create", tenant_id, "--cell", "cli-1", expect=4)
    finally:
        _allow(cell.database_url, trigger)

    def findings(*args: str) -> list[str]:
        """Verify's findings naming the tenant (other tenants of the cell may have their own)."""
        result = CliRunner().invoke(cli, ["--format", "json", "verify", *args, "--unapplied-age-max-s", "0"],
                                    env=ctl.env, catch_exceptions=False)
        assert result.exit_code in (0, 3), result.stderr
        report = json.loads(result.stdout) if result.exit_code == 0 else json.loads(result.stderr.splitlines()[-1])
        violations = report["violations"] if result.exit_code == 0 else report["details"]["violations"]
        return [v for v in violations if tenant_id in v]

    assert findings("--cell", "cli-1") == []  # a create still within its bound
    run_sql(stack["cp_url"], "UPDATE tenants SET created_at = now() - interval '11 minutes' WHERE id = $1", tenant_id)
    for where in (("--cell", "cli-1"), ("--tenant", tenant_id)):
        failed = ctl.json("verify", *where, "--unapplied-age-max-s", "0", expect=3)
        [found] = [v for v in failed["details"]["violations"] if tenant_id in v]
        assert "creating" in found and "600" in found and f"ledgerctl tenants create {tenant_id}" in found, found
    ctl("tenants", "create", tenant_id)
    assert findings("--cell", "cli-1") == [] and findings("--tenant", tenant_id) == []
