"""Routing through a real router to real (stand-in) cells: placement, forwarding, route changes, Redis outages."""

from __future__ import annotations

import asyncio

import httpx

from control_plane.devstack import EmbeddedValkey

from router_rig import basic, eventually, new_tenant_id


async def test_tenants_on_different_cells_reach_their_own_cell(platform):
    a, b = new_tenant_id("a"), new_tenant_id("b")
    await platform.add_tenant(a, "cell-a")
    await platform.add_tenant(b, "cell-b")
    router = await platform.router()
    try:
        async with httpx.AsyncClient(base_url=router.url) as client:
            for _ in range(3):  # also over reused keep-alive connections
                ra = await client.get("/api/ledgers", headers=basic(a))
                rb = await client.get("/api/ledgers", headers=basic(b))
                assert (ra.status_code, ra.json()["cell"], ra.json()["tenant"]) == (200, "cell-a", a)
                assert (rb.status_code, rb.json()["cell"], rb.json()["tenant"]) == (200, "cell-b", b)
    finally:
        await router.stop()


async def test_request_and_answer_pass_through_unchanged(platform):
    tenant = new_tenant_id()
    await platform.add_tenant(tenant, "cell-a")
    router = await platform.router()
    try:
        async with httpx.AsyncClient(base_url=router.url) as client:
            response = await client.post(
                "/api/ledger_transactions/a%2Fb?per_page=5&after_cursor=x%20y", content=b'{"amount": 100}',
                headers={**basic(tenant, "the-key"), "idempotency-key": "idem-1", "content-type": "application/json"})
    finally:
        await router.stop()
    assert response.status_code == 201
    assert response.headers["x-cell"] == "cell-a"
    assert "server" not in response.headers  # nothing of the router's own is added
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["raw_path"] == "/api/ledger_transactions/a%2Fb"
    assert seen["query"] == "per_page=5&after_cursor=x%20y"
    assert seen["body"] == '{"amount": 100}'
    assert seen["headers"]["idempotency-key"] == "idem-1"
    assert seen["headers"]["authorization"] == basic(tenant, "the-key")["authorization"]
    assert seen["headers"]["content-length"] == "15"


async def test_route_change_published_is_followed_at_once(platform):
    tenant = new_tenant_id()
    await platform.add_tenant(tenant, "cell-a")
    router = await platform.router(reload_interval_s=600.0)  # only pub/sub can explain a quick change
    try:
        async with httpx.AsyncClient(base_url=router.url) as client:
            assert (await client.get("/api/x", headers=basic(tenant))).json()["cell"] == "cell-a"
            assert await eventually(lambda: _pubsub_ready(client), 5)
            await platform.move(tenant, "cell-b", publish=True)

            assert await eventually(lambda: _routed_to(client, tenant, "cell-b"), 3)
    finally:
        await router.stop()


async def _routed_to(client: httpx.AsyncClient, tenant: str, cell: str) -> bool:
    return (await client.get("/api/x", headers=basic(tenant))).json()["cell"] == cell


async def _pubsub_ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).json()["pubsub"]


async def test_route_change_without_publish_is_followed_within_the_reload_bound(platform):
    async with platform.routed(reload_interval_s=0.3) as (tenant, router):
        async with httpx.AsyncClient(base_url=router.url) as client:
            assert (await client.get("/api/x", headers=basic(tenant))).json()["cell"] == "cell-a"
            await platform.move(tenant, "cell-b", publish=False)
            # The bound is the reload interval (plus a reload's own time): well within 3 s.
            assert await eventually(lambda: _routed_to(client, tenant, "cell-b"), 3)


async def test_redis_outage_does_not_stop_routing(platform, tmp_path):
    valkey = EmbeddedValkey(tmp_path / "valkey").start()
    tenant = new_tenant_id()
    await platform.add_tenant(tenant, "cell-a")
    router = await platform.router(redis_url=valkey.url, reload_interval_s=0.3)
    try:
        async with httpx.AsyncClient(base_url=router.url) as client:
            assert await eventually(lambda: _pubsub_ready(client), 5)
            valkey.stop()
            assert await eventually(lambda: _not(client), 5)  # the router noticed the outage
            for _ in range(5):
                response = await client.get("/api/x", headers=basic(tenant))
                assert (response.status_code, response.json()["cell"]) == (200, "cell-a")
            assert (await client.get("/readyz")).status_code == 200
            # Route changes still arrive, through the periodic reload.
            await platform.move(tenant, "cell-b", publish=False)

            assert await eventually(lambda: _routed_to(client, tenant, "cell-b"), 3)
    finally:
        await router.stop()
        valkey.stop()


async def _not(client: httpx.AsyncClient) -> bool:
    return not (await client.get("/readyz")).json()["pubsub"]


async def test_pubsub_resumes_after_a_redis_outage(platform, tmp_path):
    valkey = EmbeddedValkey(tmp_path / "valkey").start()
    tenant = new_tenant_id()
    await platform.add_tenant(tenant, "cell-a")
    router = await platform.router(redis_url=valkey.url, reload_interval_s=600.0)  # only pub/sub can explain it
    try:
        async with httpx.AsyncClient(base_url=router.url) as client:
            assert await eventually(lambda: _pubsub_ready(client), 5)
            valkey.stop()
            assert await eventually(lambda: _not(client), 5)
            valkey.start()  # the same port
            # Reconnect backoff is capped at 5 s.
            assert await eventually(lambda: _pubsub_ready(client), 15)
            await platform.move(tenant, "cell-b", publish=True, redis_url=valkey.url)

            assert await eventually(lambda: _routed_to(client, tenant, "cell-b"), 3)
    finally:
        await router.stop()
        valkey.stop()


async def test_a_cell_answering_421_makes_the_router_refresh_and_retry_once(platform):
    async with platform.routed(reload_interval_s=600.0) as (tenant, router):
        async with httpx.AsyncClient(base_url=router.url) as client:
            assert (await client.get("/api/x", headers=basic(tenant))).json()["cell"] == "cell-a"
            # The tenant moved, but this router heard nothing: its map is stale.
            await platform.move(tenant, "cell-b", publish=False)
            platform.echo("cell-a").moved_out.add(tenant)
            seen_a = platform.echo("cell-a").seen.count(tenant)
            response = await client.post("/api/x", headers=basic(tenant), content=b"{}")
            assert (response.status_code, response.json()["cell"]) == (201, "cell-b")
            assert platform.echo("cell-a").seen.count(tenant) == seen_a + 1
            # Refreshed: the next request goes straight to cell-b.
            await client.get("/api/x", headers=basic(tenant))
            assert platform.echo("cell-a").seen.count(tenant) == seen_a + 1


async def test_421_from_both_cells_is_returned_after_one_retry(platform):
    tenant = new_tenant_id()
    await platform.add_tenant(tenant, "cell-a")
    platform.echo("cell-a").moved_out.add(tenant)
    router = await platform.router(redis_url="")
    try:
        async with httpx.AsyncClient(base_url=router.url) as client:
            response = await client.get("/api/x", headers=basic(tenant))
    finally:
        await router.stop()
    assert response.status_code == 421
    assert platform.echo("cell-a").seen.count(tenant) == 2  # the first try and exactly one retry


async def test_stop_ends_even_a_loop_that_swallowed_its_cancel(platform):
    """redis-py's pub/sub read once swallowed the router's cancel and waited for a message for ever, and
    stop() with it (CI hung 300 s). stop() now repeats the cancel, within a bound."""
    tenant = new_tenant_id()
    await platform.add_tenant(tenant, "cell-a")
    router = await platform.router()

    async def stubborn():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # swallowed, as that read did
        await asyncio.sleep(3600)

    task = asyncio.create_task(stubborn())
    router.server.router._tasks.append(task)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(router.stop(), 10)
    assert task.cancelled()
    assert loop.time() - started < 5


async def test_a_write_refused_while_the_tenant_is_frozen_is_held_then_applied_once(platform):
    async with platform.routed(frozen_hold_s=5.0) as (tenant, router):
        cell = platform.echo("cell-a")
        async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
            await client.get("/api/x", headers=basic(tenant))  # a kept-alive connection to the cell, at hand
            cell.frozen_until[tenant] = asyncio.get_running_loop().time() + 0.3
            seen = cell.seen.count(tenant)
            response = await client.post("/api/x", headers=basic(tenant), content=b'{"n": 1}')
            tries = cell.seen.count(tenant) - seen
    # The client never saw the freeze: held and retried until it was over, answered by the cell once.
    assert response.status_code == 201 and response.json()["body"] == '{"n": 1}'
    assert tries >= 2


async def test_a_freeze_longer_than_the_hold_answers_the_cells_503(platform):
    async with platform.routed(frozen_hold_s=0.3) as (tenant, router):
        platform.echo("cell-a").frozen_until[tenant] = asyncio.get_running_loop().time() + 3600
        try:
            async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
                response = await client.post("/api/x", headers=basic(tenant), content=b"{}")
        finally:
            del platform.echo("cell-a").frozen_until[tenant]
    assert response.status_code == 503
    assert response.json()["code"] == "tenant_frozen" and response.headers["retry-after"] == "1"


async def test_a_tenant_still_being_created_is_not_routed_until_it_turns_active(platform):
    """`ledgerctl tenants create` writes the catalog row `creating` before the cell has the tenant: the router
    answers a request for it as for an unknown tenant (401, nothing sent to its cell, which may be gone for good),
    and routes it once it turns active (the create publishes the change)."""
    from control_plane.operations import publish_route

    tenant, unknown = new_tenant_id("creating"), new_tenant_id("unknown")
    await platform.sql("INSERT INTO tenants (id, cell, state) VALUES ($1, 'cell-a', 'creating')", tenant)
    router = await platform.router(reload_interval_s=600.0)  # only pub/sub can explain a quick change
    try:
        async with httpx.AsyncClient(base_url=router.url) as client:
            assert await eventually(lambda: _pubsub_ready(client), 5)
            response = await client.get("/api/x", headers=basic(tenant))
            stranger = await client.get("/api/x", headers=basic(unknown))
            assert (response.status_code, response.headers["content-type"]) == (401, "application/problem+json")
            assert (response.json(), response.headers["www-authenticate"]) == (
                stranger.json(), stranger.headers["www-authenticate"])
            assert platform.echo("cell-a").seen.count(tenant) == 0
            [row] = await platform.sql("UPDATE tenants SET state = 'active' WHERE id = $1 "
                                       "RETURNING id, cell, epoch", tenant)
            assert await publish_route(platform.settings, dict(row))

            async def routed() -> bool:  # a 401 until the router has reloaded
                response = await client.get("/api/x", headers=basic(tenant))
                return response.status_code == 200 and response.json()["cell"] == "cell-a"

            assert await eventually(routed, 3)
    finally:
        await router.stop()
        await platform.sql("DELETE FROM tenants WHERE id = $1", tenant)
