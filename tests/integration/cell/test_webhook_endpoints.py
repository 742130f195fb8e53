"""/api/webhook_endpoints as a tenant uses it: register (the key shown once), read, change, rotate the key,
remove; a URL the worker would refuse to call is a clear 422 at registration (production settings here)."""

from __future__ import annotations

import pytest

PUBLIC = "https://93.184.216.34/hooks"  # a public address, no DNS needed


async def test_an_endpoint_is_registered_with_its_key_shown_once_then_changed_rotated_and_removed(api):
    r = await api.post("/api/webhook_endpoints", {"url": PUBLIC, "event_names": ["ledger_transaction.posted"],
                                                  "description": "payments", "metadata": {"team": "ops"}})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["object"] == "webhook_endpoint" and made["url"] == PUBLIC and made["active"] is True
    assert made["event_names"] == ["ledger_transaction.posted"] and made["webhook_key"].startswith("whk_")
    shown = (await api.get(f"/api/webhook_endpoints/{made['id']}")).json()
    assert shown["webhook_key"] is None and shown["metadata"] == {"team": "ops"}
    listed = (await api.get("/api/webhook_endpoints")).json()
    assert [e["id"] for e in listed] == [made["id"]] and listed[0]["webhook_key"] is None

    r = await api.patch(f"/api/webhook_endpoints/{made['id']}", {"event_names": [], "active": False})
    assert r.status_code == 200 and r.json()["event_names"] == [] and r.json()["active"] is False
    rotated = (await api.post(f"/api/webhook_endpoints/{made['id']}/rotate_key")).json()
    assert rotated["webhook_key"].startswith("whk_") and rotated["webhook_key"] != made["webhook_key"]

    r = await api.request("DELETE", f"/api/webhook_endpoints/{made['id']}")
    assert r.status_code == 200 and r.json()["id"] == made["id"]
    assert (await api.get(f"/api/webhook_endpoints/{made['id']}")).status_code == 404
    assert (await api.get("/api/webhook_deliveries")).json() == []


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:8080/hooks", "https"),  # http in production mode, even to loopback
    ("http://93.184.216.34/hooks", "https"),
    ("https://127.0.0.1/hooks", "private"),
    ("https://10.1.2.3/hooks", "private"),
    ("https://192.168.0.10/hooks", "private"),
    ("https://169.254.169.254/latest/meta-data", "private"),  # cloud metadata (link-local)
    ("https://[::1]/hooks", "private"),
    ("https://[::ffff:10.0.0.1]/hooks", "private"),
    ("https://[64:ff9b::a9fe:a9fe]/latest/meta-data", "private"),  # the metadata address through a NAT64 gateway
    ("https://[2002:a00:1::]/hooks", "private"),  # 10.0.0.1 through a 6to4 relay
    ("https://localhost/hooks", "private"),
    ("https://user:pw@93.184.216.34/hooks", "credentials"),
    ("ftp://93.184.216.34/hooks", "https"),
    ("/hooks", "absolute"),
    ("https://a..example.com/hooks", "labels"),  # a name the resolver cannot encode: refused before any lookup
    ("https://" + "a" * 64 + ".example.com/hooks", "labels"),
    ("https://.example.com/hooks", "labels"),
    # Hosts the worker's client (IDNA 2008) cannot send to: the resolver's IDNA 2003 reads the first as 93.184.216.34.
    ("https://\uff19\uff13.\uff11\uff18\uff14.\uff12\uff11\uff16.\uff13\uff14/hooks", "host"),
    ("https://xn--zz.example.com/hooks", "host"),
])
async def test_a_url_the_worker_would_not_call_is_refused_at_registration_with_why(api, url, why):
    r = await api.post("/api/webhook_endpoints", {"url": url})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "webhook_url_refused" and why in body["detail"]
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_a_change_to_a_refused_url_is_refused_and_another_tenant_sees_nothing(api, new_tenant):
    made = (await api.post("/api/webhook_endpoints", {"url": PUBLIC})).json()
    r = await api.patch(f"/api/webhook_endpoints/{made['id']}", {"url": "https://10.0.0.1/x"})
    assert r.status_code == 422 and r.json()["code"] == "webhook_url_refused"
    r = await api.patch(f"/api/webhook_endpoints/{made['id']}", {"url": "https://a..example.com/x"})
    assert r.status_code == 422 and r.json()["code"] == "webhook_url_refused"
    other = await new_tenant()
    assert (await other.get(f"/api/webhook_endpoints/{made['id']}")).status_code == 404
    assert (await other.post(f"/api/webhook_endpoints/{made['id']}/rotate_key")).status_code == 404
    assert (await other.get("/api/webhook_endpoints")).json() == []
    bad = await api.post("/api/webhook_endpoints", {"url": PUBLIC, "event_names": ["Not An Event"]})
    assert bad.status_code == 400


async def test_an_event_name_the_cell_never_writes_is_refused_not_silently_never_delivered(api):
    """A misspelt name would make an endpoint that hears nothing, its owner none the wiser."""
    for names in (["ledger_transaction.craeted"], ["ledger_transaction.posted", "ledger.posted"]):
        r = await api.post("/api/webhook_endpoints", {"url": PUBLIC, "event_names": names})
        assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
        assert "event_names" in r.json()["detail"]
    made = await api.post("/api/webhook_endpoints", {"url": PUBLIC, "event_names": [
        "ledger_transaction.posted", "balance_monitor.triggered", "ledger_account_settlement.finish_processing"]})
    assert made.status_code == 201
    r = await api.patch(f"/api/webhook_endpoints/{made.json()['id']}", {"event_names": ["ledger_account.craeted"]})
    assert r.status_code == 400 and sorted((await api.get("/api/webhook_endpoints")).json()[0]["event_names"]) == [
        "balance_monitor.triggered", "ledger_account_settlement.finish_processing", "ledger_transaction.posted"]


async def test_a_redelivery_asked_while_the_tenant_is_frozen_for_a_move_is_refused_not_written_on_the_source(
        api, admin_conn):
    """The freeze's promise: no write of the tenant commits on the source after it (the move has read its rows). A
    redelivery accepted there would be lost on the target: it is a 503 tenant_frozen, as every other write is."""
    import uuid

    from cell.store import events as store_events
    from cell.store import webhooks as store_webhooks

    made = (await api.post("/api/webhook_endpoints", {"url": PUBLIC})).json()
    await api.ledger()  # an event
    while await store_events.sequence(admin_conn):
        pass
    await store_webhooks.fan_out(admin_conn, uuid.UUID(made["id"]), 100, 3600)  # as the worker does
    (delivery,) = (await api.get("/api/webhook_deliveries")).json()
    await admin_conn.execute("UPDATE webhook_deliveries SET status = 'failed' WHERE id = $1", uuid.UUID(delivery["id"]))
    await admin_conn.execute("UPDATE tenants SET state = 'frozen' WHERE id = $1", api.tenant_id)
    try:
        r = await api.post(f"/api/webhook_deliveries/{delivery['id']}/redeliver")
        assert r.status_code == 503 and r.json()["code"] == "tenant_frozen", r.text
        assert await admin_conn.fetchval("SELECT status FROM webhook_deliveries WHERE id = $1",
                                         uuid.UUID(delivery["id"])) == "failed"
    finally:
        await admin_conn.execute("UPDATE tenants SET state = 'active' WHERE id = $1", api.tenant_id)
    r = await api.post(f"/api/webhook_deliveries/{delivery['id']}/redeliver")
    assert r.status_code == 200 and r.json()["status"] == "pending"



async def test_registrations_arriving_together_stay_within_the_tenants_bound(api, admin_conn, cell_database_url):
    """webhook_endpoints_max holds when the last free place is asked for twice at once (two API processes): one
    endpoint is registered, the other registration is 422 too_many_endpoints."""
    import asyncio
    import time

    from cell.ledger.commands import WebhookEndpointCreate
    from cell.ledger.errors import PostingRejected
    from cell.service import webhooks
    from cell.store.db import create_pool
    from ledger_common.outbound import OutboundPolicy

    async def register(conn, i: int):
        try:
            return await webhooks.create_endpoint(conn, api.tenant_id, WebhookEndpointCreate(url=f"{PUBLIC}/{i}"),
                                                  policy=OutboundPolicy(), endpoints_max=2)
        except PostingRejected as exc:
            return exc.code

    pool = await create_pool(cell_database_url, min_size=3, max_size=3)  # as the API's
    holder, *racers = [await pool.acquire() for _ in range(3)]
    try:
        await register(holder, 0)
        held = holder.transaction()
        await held.start()
        await holder.execute("LOCK TABLE webhook_endpoints IN SHARE MODE")  # counting goes on, inserting waits
        racing = [asyncio.create_task(register(conn, i)) for i, conn in enumerate(racers, 1)]
        deadline = time.monotonic() + 20
        while await admin_conn.fetchval("SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted") < 2:
            assert time.monotonic() < deadline, "both registrations waiting"
            await asyncio.sleep(0.01)
        await held.rollback()
        outcomes = await asyncio.gather(*racing)
    finally:
        for conn in (holder, *racers):
            await pool.release(conn)
        await pool.close()
    assert sorted(o if isinstance(o, str) else "registered" for o in outcomes) == ["registered", "too_many_endpoints"]
    assert len((await api.get("/api/webhook_endpoints")).json()) == 2
