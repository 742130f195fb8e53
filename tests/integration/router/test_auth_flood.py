"""A flood of wrong keys naming a tenant, through the router to real cells: the attacker's address runs out of
failed attempts (401, then 429 from the router), the tenant's own budget is untouched (its real client goes on
at its normal rate)."""

from __future__ import annotations

import asyncio

import httpx

from router.app import UNAUTHORIZED_BODY

from router_rig import eventually

TENANT_RATE_PER_S = 5
ATTACKER_LOOPS = 16
VICTIM_RATE_PER_S = 3
VICTIM_REQUESTS = 15  # five seconds at its normal rate
ATTACKER_ADDRESS = "127.0.0.2"  # another client address on the loopback (Linux routes all of 127/8 there)


async def test_wrong_keys_do_not_spend_the_tenants_rate_limit(cells_platform):
    from control_plane import operations

    tenant_id, secret = await cells_platform.tenant("cell-1", "victim")
    router = await cells_platform.start_router(auth_failures_per_s_max=5.0, auth_failure_burst_max=20)
    try:
        await operations.set_rate_limit(cells_platform.conn, cells_platform.settings, tenant_id, TENANT_RATE_PER_S,
                                        None)

        async def limited() -> bool:
            route = router.server.router.table.get(tenant_id)
            return route is not None and route.rate_per_s == TENANT_RATE_PER_S

        assert await eventually(limited, 10)

        attacker = httpx.AsyncClient(base_url=router.url, timeout=30,
                                     transport=httpx.AsyncHTTPTransport(local_address=ATTACKER_ADDRESS))
        victim = httpx.AsyncClient(base_url=router.url, timeout=30, auth=(tenant_id, secret))
        seen: list[httpx.Response] = []  # the attacker's answers, in the order they came
        stop = asyncio.Event()

        async def flood(n: int) -> None:
            while not stop.is_set():
                seen.append(await attacker.get("/api/ledgers", auth=(tenant_id, f"lk_wrong_{n}")))

        loop = asyncio.get_running_loop()
        flood_started = loop.time()
        flooders = [asyncio.create_task(flood(n)) for n in range(ATTACKER_LOOPS)]
        try:
            async def refused() -> bool:
                return any(r.status_code == 429 for r in seen)

            assert await eventually(refused, 20)  # the flood is on: the attacker's address is out of attempts
            statuses = []
            next_at = loop.time()
            for _ in range(VICTIM_REQUESTS):
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                statuses.append((await victim.get("/api/ledgers")).status_code)
                # Never faster than its normal rate, even after a slow answer on a loaded machine.
                next_at = max(next_at + 1 / VICTIM_RATE_PER_S, loop.time())
        finally:
            stop.set()
            await asyncio.gather(*flooders)
            flood_s = loop.time() - flood_started
            await attacker.aclose()
            await victim.aclose()
    finally:
        await router.stop()

    # The real client is served as if nobody else had used its tenant id.
    assert statuses.count(200) / len(statuses) >= 0.99, statuses
    # The attacker: 401 while its address had attempts left, then the router's 429, never anything else.
    codes = [r.status_code for r in seen]
    assert codes[0] == 401 and set(codes) == {401, 429}, set(codes)
    for response in seen:
        if response.status_code == 401:
            assert response.content == UNAUTHORIZED_BODY
        else:
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "auth_failures_rate_limited"
            assert int(response.headers["retry-after"]) >= 1
    # Wrong keys reached the cell at the address's rate at most: the burst, the rate over the flood's time, and
    # the requests in flight when the bucket ran dry.
    assert codes.count(401) <= 20 + 5 * flood_s + ATTACKER_LOOPS, (codes.count(401), flood_s)
