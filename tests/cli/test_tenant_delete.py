"""ledgerctl tenants delete: a tenant left `creating` (its cell failing, or gone for good) or one that holds nothing
on its cell is removed, audited; a tenant with data (ledgers, live keys) is refused and keeps working."""

from __future__ import annotations

import httpx

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
