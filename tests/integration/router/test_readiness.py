"""The router's readiness follows its cells: 200 only with a routing table and a recent successful health check
of every cell that has tenants; a stopped cell makes it 503 (naming the cell) while the other cells' tenants are
served and the stopped cell's are answered 503 + Retry-After at once."""

from __future__ import annotations

import time
import uuid

import httpx

from router_rig import EchoCell, Served, basic, eventually, new_tenant_id


async def test_readiness_with_a_cell_stopped(platform):
    name = f"cell-r-{uuid.uuid4().hex[:6]}"
    served = await Served(EchoCell(name)).start()
    await platform.sql("INSERT INTO cells (name, api_url, database_url) VALUES ($1, $2, '')", name, served.url)
    there, elsewhere = new_tenant_id("r"), new_tenant_id("a")
    await platform.add_tenant(there, name)
    await platform.add_tenant(elsewhere, "cell-a")
    # 'cell-down' is registered but has no tenant: it does not count.
    router = await platform.router(redis_url="", cell_health_interval_s=0.1, cell_health_ttl_s=1.0)
    try:
        async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            async def not_ready() -> bool:
                return (await client.get("/readyz")).status_code == 503

            assert await ready()  # the cells were checked before the router listened
            assert (await client.get("/readyz")).json()["cells"] == {name: True, "cell-a": True}

            await served.stop()
            assert await eventually(not_ready, 10)
            answer = await client.get("/readyz")
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["code"] == "not_ready"
            assert answer.json()["unhealthy_cells"] == [name]
            assert name in answer.json()["detail"]

            started = time.monotonic()
            down = await client.get("/api/x", headers=basic(there))
            down_s = time.monotonic() - started
            assert down.status_code == 503 and down.json()["code"] == "cell_unavailable"
            assert int(down.headers["retry-after"]) >= 1
            assert down_s < router.server.settings.connect_timeout_s + 2  # refused at once, no waiting out a timeout
            up = await client.get("/api/x", headers=basic(elsewhere))
            assert (up.status_code, up.json()["cell"]) == (200, "cell-a")

            served = await Served(served.app, port=served.port).start()  # back on the same address
            assert await eventually(ready, 10)
    finally:
        await router.stop()
        await served.stop()
        await platform.sql("DELETE FROM tenants WHERE id = $1", there)


async def test_not_ready_while_a_cell_with_tenants_was_never_reached(platform):
    tenant = new_tenant_id()
    await platform.add_tenant(tenant, "cell-down")
    try:
        router = await platform.router(redis_url="", cell_health_interval_s=0.1)
        try:
            async with httpx.AsyncClient(base_url=router.url) as client:
                answer = await client.get("/readyz")
                assert answer.status_code == 503
                assert answer.json()["unhealthy_cells"] == ["cell-down"]
                assert (await client.get("/healthz")).status_code == 200  # alive all the same
                # and started: its routing table is loaded (it serves the other cells' tenants)
                assert (await client.get("/startupz")).status_code == 200
        finally:
            await router.stop()
    finally:
        await platform.sql("DELETE FROM tenants WHERE id = $1", tenant)
