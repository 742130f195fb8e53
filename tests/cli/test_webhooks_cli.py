"""`ledgerctl webhooks`: add (the key shown once), list, rotate-key, remove, deliveries and redeliver, against a
real catalog and real cells."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg

from cli_rig import Ledgerctl
from cell.store import webhooks as store

PUBLIC = "https://93.184.216.34/hooks"


def _cell_url(stack, ctl, tenant_id: str) -> str:
    return stack["cells"][ctl.json("tenants", "show", tenant_id)["cell"]].database_url


def _failed_delivery(database_url: str, tenant_id: str) -> str:
    """An event the endpoint wants, fanned out and attempted once past its retry window: failed for good."""

    async def go() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("SELECT ledger_event($1, 'ledger_account', 'ledger_account.created', $2, '{}'::jsonb)",
                               tenant_id, uuid.uuid4())
            await conn.execute("SELECT ledger_sequence_events()")
            (endpoint_id,) = [r["id"] for r in await conn.fetch(
                "SELECT id FROM webhook_endpoints WHERE tenant_id = $1", tenant_id)]
            assert await store.fan_out(conn, endpoint_id, 100, 0) == (1, 1)
            delivery_id = await conn.fetchval("SELECT id FROM webhook_deliveries WHERE tenant_id = $1", tenant_id)
            assert await store.attempt_failed(conn, delivery_id, 500, "HTTP 500: not 2xx", 1.0) == "failed"
            return str(delivery_id)
        finally:
            await conn.close()

    return asyncio.run(go())


def test_webhooks_add_list_rotate_deliveries_redeliver_remove(ctl, stack):
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    ctl.json("tenants", "create", tenant_id)
    added = ctl.json("webhooks", "add", tenant_id, PUBLIC, "--event", "ledger_account.created",
                     "--description", "ops")
    key = added["webhook_key"]
    assert key.startswith("whk_") and added["event_names"] == ["ledger_account.created"]
    pretty = ctl("webhooks", "add", tenant_id, PUBLIC)
    assert "webhook_key" in pretty.stdout and "cannot be shown again" in pretty.stderr
    listed = ctl.json("webhooks", "list", tenant_id)
    assert {e["id"] for e in listed} >= {added["id"]} and key not in json.dumps(listed)
    other = next(e["id"] for e in listed if e["id"] != added["id"])
    ctl.json("webhooks", "remove", tenant_id, other, "--yes")

    rotated = ctl.json("webhooks", "rotate-key", tenant_id, added["id"])
    assert rotated["webhook_key"] not in (None, key)

    delivery_id = _failed_delivery(_cell_url(stack, ctl, tenant_id), tenant_id)
    failed = ctl.json("webhooks", "deliveries", tenant_id, "--status", "failed")
    assert [(d["id"], d["status"], d["last_status_code"]) for d in failed] == [(delivery_id, "failed", 500)]
    assert "HTTP 500" in ctl("webhooks", "deliveries", tenant_id).stdout
    again = ctl.json("webhooks", "redeliver", tenant_id, delivery_id)
    assert again["redelivered"] == 1 and again["delivery"]["status"] == "pending"
    assert ctl.json("webhooks", "redeliver", tenant_id, "--failed")["redelivered"] == 0

    ctl.json("webhooks", "remove", tenant_id, added["id"], "--yes")
    assert ctl.json("webhooks", "list", tenant_id) == []
    assert ctl.json("webhooks", "deliveries", tenant_id) == []


def test_webhooks_refuse_what_the_worker_would_not_call(ctl, stack):
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    ctl.json("tenants", "create", tenant_id)
    for url in ("http://127.0.0.1:9000/hooks", "https://10.0.0.7/hooks", "https://169.254.169.254/"):
        refused = ctl.json("webhooks", "add", tenant_id, url, expect=1)
        assert refused["code"] == "webhook_url_refused", refused
    dev = Ledgerctl({**stack["env"], "CONTROL_PLANE_WEBHOOK_ALLOW_HTTP_LOOPBACK": "true"})
    assert dev.json("webhooks", "add", tenant_id, "http://127.0.0.1:9000/hooks")["url"].startswith("http://127")
    assert ctl.json("webhooks", "add", "no-such-tenant", PUBLIC, expect=1)["code"] == "unknown_tenant"
    assert ctl.json("webhooks", "remove", tenant_id, str(uuid.uuid4()), "--yes", expect=1)["code"] == "not_found"
    assert ctl.json("webhooks", "redeliver", tenant_id, expect=1)["code"] == "invalid_arguments"
