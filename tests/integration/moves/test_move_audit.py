"""A tenant moved under load while both cells' sealers run (as their workers run them): its audit chain and
anchors move with it and verify on the target, no copied row is sealed again, its neighbour's chain is untouched."""

from __future__ import annotations

import asyncio
import contextlib
import time

import test_move_under_load
from test_move_under_load import Writer, _tenant

from cell.store.db import create_pool
from control_plane import operations
from control_plane.moves import plan_move, run_move, start_move
from worker.sealer import Sealer
from worker.settings import load_settings

world = test_move_under_load.world  # the two cells, the router and the control plane of the move tests


@contextlib.asynccontextmanager
async def sealers(world):
    """Every cell's sealer every 0.2 s, anchoring in the catalog every 0.5 s, until the block ends."""
    stop, pools, tasks = asyncio.Event(), [], []

    async def loop(sealer: Sealer, pool) -> None:
        while not stop.is_set():
            await sealer.run(pool)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    for name, url in world["cells"].items():
        settings = load_settings({}, cell_name=name, database_url=url, audit_anchor_every_s=0.5,
                                 audit_anchor_database_url=world["settings"].database_url)
        pool = await create_pool(url, min_size=1, max_size=2, role=settings.db_role)
        pools.append(pool)
        tasks.append(asyncio.create_task(loop(Sealer(settings), pool)))
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for pool in pools:
            await pool.close()


async def audit_report(world, tenant: str) -> dict:
    (report,) = (await operations.audit_verify(world["conn"], world["settings"], tenant, None))["tenants"]
    return report


async def sealed_and_anchored(world, tenant: str, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while (report := await audit_report(world, tenant))["unsealed"] or report["latest_anchor"] != report["head_seq"]:
        assert time.monotonic() < deadline, report
        await asyncio.sleep(0.2)
    return report


async def test_the_chain_and_its_anchors_move_with_the_tenant(world):
    http, tenant, ledger, accounts = await _tenant(world, "mv-1")
    other_http, other, other_ledger, other_accounts = await _tenant(world, "mv-1")
    moving, neighbour = Writer(http, ledger, accounts), Writer(other_http, other_ledger, other_accounts)
    async with sealers(world):
        tasks = [asyncio.create_task(moving.run()), asyncio.create_task(neighbour.run())]
        try:
            deadline = time.monotonic() + 30
            while len(moving.acked) < 60:
                assert time.monotonic() < deadline and not any(t.done() for t in tasks)
                await asyncio.sleep(0.05)
            move = await start_move(world["conn"], world["settings"],
                                    await plan_move(world["conn"], world["settings"], tenant, "mv-2"))
            result = await run_move(world["conn"], world["settings"], move["id"])
            assert result["state"] == "done", result
            after = len(moving.acked)
            while len(moving.acked) < after + 20:
                assert time.monotonic() < deadline + 60 and not any(t.done() for t in tasks)
                await asyncio.sleep(0.05)
        finally:
            moving.stop = neighbour.stop = True
            await asyncio.gather(*tasks)
        # Everything written is sealed and anchored within seconds (on the target what was written after the move).
        report = await sealed_and_anchored(world, tenant)
        neighbour_report = await sealed_and_anchored(world, other)
    assert report["cell"] == "mv-2" and report["findings"] == [], report
    # One link per version (every posting is one version) and one per account: nothing sealed twice.
    assert report["head_seq"] == len(moving.acked) + len(accounts)
    # Anchors published by the source before the move and by the target after it: all on one chain.
    cells = {r["cell"] for r in await world["conn"].fetch("SELECT cell FROM audit_anchors WHERE tenant_id = $1",
                                                          tenant)}
    assert cells == {"mv-1", "mv-2"}
    assert neighbour_report["findings"] == [] and neighbour_report["head_seq"] == len(neighbour.acked) + 2
    await http.aclose()
    await other_http.aclose()
