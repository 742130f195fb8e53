"""The router's own answers: unknown tenant, cell down, rate limits, bounds, health and metrics."""

from __future__ import annotations

import time

import httpx

from router.app import UNAUTHORIZED_BODY

from router_rig import basic, new_tenant_id


async def test_unknown_tenant_is_401_like_a_bad_key(platform):
    known = new_tenant_id()
    await platform.add_tenant(known, "cell-a")
    router = await platform.router(redis_url="")
    try:
        async with httpx.AsyncClient(base_url=router.url) as client:
            unknown = await client.get("/api/ledgers", headers=basic(new_tenant_id()))
            missing = await client.get("/api/ledgers")
            garbage = await client.get("/api/ledgers", headers={"authorization": "Basic !!!"})
            bearer = await client.get("/api/ledgers", headers={"authorization": "Bearer x"})
    finally:
        await router.stop()
    for response in (unknown, missing, garbage, bearer):
        assert response.status_code == 401
        assert response.content == UNAUTHORIZED_BODY
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Basic")
    assert unknown.headers == missing.headers


async def test_cell_down_is_503_with_retry_after(platform):
    async with platform.routed("cell-down") as (tenant, router):
        async with httpx.AsyncClient(base_url=router.url) as client:
            response = await client.post("/api/ledgers", headers=basic(tenant), content=b"{}")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["code"] == "cell_unavailable"


async def test_a_cell_that_does_not_answer_in_time_is_504_and_the_router_goes_on(platform):
    async with platform.routed(upstream_timeout_s=0.3) as (tenant, router):
        async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
            await client.get("/api/x", headers=basic(tenant))  # a kept-alive connection to the cell, at hand
            started = time.monotonic()
            slow = await client.get("/api/x?sleep=20", headers=basic(tenant))
            waited_s = time.monotonic() - started
            after = await client.get("/api/x", headers=basic(tenant))
    assert slow.status_code == 504
    assert slow.headers["content-type"] == "application/problem+json" and slow.json()["code"] == "cell_timeout"
    assert waited_s < 10  # the bound, not the cell's 20 s
    assert after.status_code == 200


async def test_rate_limit_is_per_tenant(platform):
    limited, other = new_tenant_id("flood"), new_tenant_id("calm")
    await platform.add_tenant(limited, "cell-a", rate=1, burst=3)
    await platform.add_tenant(other, "cell-a")
    router = await platform.router(redis_url="")
    try:
        async with httpx.AsyncClient(base_url=router.url) as client:
            started = time.monotonic()
            responses = [await client.get("/api/x", headers=basic(limited)) for _ in range(10)]
            elapsed_s = time.monotonic() - started
            calm = await client.get("/api/x", headers=basic(other))
    finally:
        await router.stop()
    statuses = [r.status_code for r in responses]
    assert statuses[:3] == [200, 200, 200]  # the burst
    # Beyond the burst, one more per elapsed second at most (however slow this machine is today).
    assert statuses.count(200) <= 3 + int(elapsed_s) + 1
    assert set(statuses) == {200, 429}
    rejected = next(r for r in responses if r.status_code == 429)
    assert rejected.json()["code"] == "rate_limited"
    assert int(rejected.headers["retry-after"]) >= 1
    assert calm.status_code == 200  # one tenant's flood does not touch another's budget


async def test_body_over_the_bound_is_413(platform):
    async with platform.routed(body_bytes_max=1000) as (tenant, router):
        async with httpx.AsyncClient(base_url=router.url) as client:
            too_big = await client.post("/api/x", headers=basic(tenant), content=b"x" * 1001)
            fits = await client.post("/api/x", headers=basic(tenant), content=b"x" * 1000)
    assert too_big.status_code == 413
    assert fits.status_code == 201


async def test_health_readiness_and_metrics(platform):
    async with platform.routed("cell-b") as (tenant, router):
        async with httpx.AsyncClient(base_url=router.url) as client:
            assert (await client.get("/healthz")).status_code == 200
            started = await client.get("/startupz")
            assert (started.status_code, started.json()) == (200, {"started": True}), started.text
            ready = await client.get("/readyz")
            await client.get("/api/x", headers=basic(tenant))
            await client.get("/api/x", headers=basic(tenant))
            metrics = (await client.get(router.metrics_url)).text
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert 'router_requests_total{cell="cell-b",status="200"} 2.0' in metrics
    assert f'router_tenant_requests_total{{tenant="{tenant}"}} 2.0' in metrics
    assert 'router_request_duration_seconds_count{cell="cell-b",status="200"} 2.0' in metrics


async def test_per_tenant_metrics_are_bounded(platform):
    tenants = [new_tenant_id("m") for _ in range(4)]
    for tenant in tenants:
        await platform.add_tenant(tenant, "cell-a")
    router = await platform.router(redis_url="", metrics_tenants_max=2)
    try:
        async with httpx.AsyncClient(base_url=router.url) as client:
            for tenant in tenants:
                await client.get("/api/x", headers=basic(tenant))
            metrics = (await client.get(router.metrics_url)).text
    finally:
        await router.stop()
    assert f'router_tenant_requests_total{{tenant="{tenants[0]}"}} 1.0' in metrics
    assert f'router_tenant_requests_total{{tenant="{tenants[1]}"}} 1.0' in metrics
    assert tenants[2] not in metrics and tenants[3] not in metrics
    assert 'router_tenant_requests_total{tenant="_other"} 2.0' in metrics


async def test_not_ready_until_the_map_is_loaded(platform):
    router = await platform.router(control_plane_database_url="postgresql://nobody@127.0.0.1:1/none",
                                   redis_url="", connect_timeout_s=0.5)
    try:
        async with httpx.AsyncClient(base_url=router.url) as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 503
            # Not started either (the Helm chart's startup probe): it would answer 401 to every tenant.
            started = await client.get("/startupz")
            assert started.status_code == 503, started.text
            assert started.headers["content-type"] == "application/problem+json"
            assert started.json()["code"] == "not_ready"
    finally:
        await router.stop()


async def test_metrics_are_served_on_their_own_listener_only(platform):
    async with platform.routed() as (tenant, router):
        async with httpx.AsyncClient(base_url=router.url) as client:
            await client.get("/api/x", headers=basic(tenant))
            public = await client.get("/metrics")
            # Not forwarded to the tenant's cell either.
            public_with_auth = await client.get("/metrics", headers=basic(tenant))
            private = await client.get(router.metrics_url)
            private_other = await client.get(router.metrics_url.replace("/metrics", "/api/x"), headers=basic(tenant))
    for response in (public, public_with_auth):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "not_found"
        assert tenant not in response.text
    assert private.status_code == 200
    assert f'router_tenant_requests_total{{tenant="{tenant}"}} 1.0' in private.text
    assert private_other.status_code == 404  # the metrics listener routes nothing


async def test_metrics_port_0_is_no_metrics_listener(platform):
    async with platform.routed(metrics_port=0) as (tenant, router):
        assert router.server.metrics_port is None
        async with httpx.AsyncClient(base_url=router.url) as client:
            assert (await client.get("/metrics")).status_code == 404
            assert (await client.get("/api/x", headers=basic(tenant))).status_code == 200


async def test_only_the_api_and_its_schema_are_relayed_to_a_cell(platform):
    """A tenant's cell serves it /api/ (past its key check) and the OpenAPI document; its own probes (/readyz/,
    //healthz: the cell's name, its backlog, its migrations) are not for clients, whatever key they send: the
    router answers 404 itself, relaying nothing."""
    async with platform.routed("cell-b") as (tenant, router):
        async with httpx.AsyncClient(base_url=router.url) as client:
            relayed = [await client.get(path, headers=basic(tenant)) for path in ("/api/x", "/schema/openapi.json")]
            refused = [await client.get(path, headers=basic(tenant))
                       for path in ("/readyz/", "//readyz", "/healthz/", "/nope", "/apix", "/%72eadyz")]
            encoded = await client.get("/%61pi/x", headers=basic(tenant))  # the cell decodes it: /api/x
    assert [r.status_code for r in relayed] == [200, 200], [r.text for r in relayed]
    assert encoded.status_code == 200, encoded.text
    for response in refused:
        assert response.status_code == 404, (response.request.url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "not_found"
        assert "cell-b" not in response.text
