"""A flood of wrong keys naming a tenant, through the router to real cells: the attacker's address runs out of
failed attempts (401, then 429 from the router), the tenant's own budget is untouched (its real client goes on
at its normal rate), on paths the cell guards or not; and no spelling of a key escapes the tenant's limit."""

from __future__ import annotations

import asyncio
import base64
import time

import httpx

from router.app import UNAUTHORIZED_BODY, _credentials

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


async def _limited_router(cells_platform, rate_per_s: float, burst: float):
    """A tenant of cell-1 with its key, and a router that knows the tenant's rate limit."""
    from control_plane import operations

    tenant_id, secret = await cells_platform.tenant("cell-1", "limited")
    router = await cells_platform.start_router()
    await operations.set_rate_limit(cells_platform.conn, cells_platform.settings, tenant_id, rate_per_s, burst)

    async def limited() -> bool:
        route = router.server.router.table.get(tenant_id)
        return route is not None and route.rate_per_s == rate_per_s

    assert await eventually(limited, 10)
    return tenant_id, secret, router


async def test_wrong_keys_on_paths_the_cell_answers_without_a_key_check_spend_nothing(cells_platform):
    """A cell checks keys on /api/ only: its answer to another path (a 404, the OpenAPI document) says nothing
    of the key sent with it, so a wrong key there neither becomes known nor spends the tenant's budget."""
    tenant_id, secret, router = await _limited_router(cells_platform, 2, 2)
    try:
        attacker = httpx.AsyncClient(base_url=router.url, timeout=30,
                                     transport=httpx.AsyncHTTPTransport(local_address=ATTACKER_ADDRESS))
        victim = httpx.AsyncClient(base_url=router.url, timeout=30, auth=(tenant_id, secret))
        try:
            attack = [(await attacker.get(path, auth=(tenant_id, "lk_wrong"))).status_code
                      for path in ("/nope", "/schema/openapi.json") * 20]
            served = [(await victim.get("/api/ledgers")).status_code for _ in range(2)]  # its burst
        finally:
            await attacker.aclose()
            await victim.aclose()
        wrong = router.server.router.credentials.tenant(_credentials(b"Basic " + base64.b64encode(
            f"{tenant_id}:lk_wrong".encode()))[2], time.monotonic())
    finally:
        await router.stop()
    assert set(attack) == {404, 200}, set(attack)  # the cell's own answers, relayed
    assert served == [200, 200] and wrong is None, (served, wrong)


async def test_the_tenants_rate_limit_holds_however_its_credentials_are_spelled(cells_platform):
    """`Basic`, `bASIC`, more spaces: one key as the cell reads it, so one budget, however new each spelling."""
    tenant_id, secret, router = await _limited_router(cells_platform, 1, 1)
    token = base64.b64encode(f"{tenant_id}:{secret}".encode())
    spellings = [bytes(c ^ 0x20 if (i >> k) & 1 else c for k, c in enumerate(b"Basic")) + b" " * (1 + i // 32) + token
                 for i in range(30)]
    try:
        async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
            started = time.monotonic()
            answers = [await client.get("/api/ledgers", headers={"authorization": value.decode()})
                       for value in spellings]
            elapsed_s = time.monotonic() - started
    finally:
        await router.stop()
    served = [r.status_code for r in answers].count(200)
    # The burst, the rate over the time taken, and one charged after the cell accepted it (into debt).
    assert served <= 2 + elapsed_s, (served, elapsed_s, [r.status_code for r in answers])
    assert {r.status_code for r in answers} == {200, 429}
    assert all(r.json()["code"] == "rate_limited" for r in answers if r.status_code == 429)
