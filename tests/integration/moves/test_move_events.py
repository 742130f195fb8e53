"""A tenant's event stream survives a move: a consumer following after_cursor through the router while the tenant
is written and moved sees every event once, in order, and its cursor keeps working on the target."""

from __future__ import annotations

import asyncio
import time

from tests.integration.moves.test_move_under_load import (  # noqa: F401 - the two cells
    Writer,
    _db,
    _move_by_cli,
    _tenant,
    world,
)


async def _follow(http, cursor: str | None) -> tuple[list[dict], str | None]:
    seen: list[dict] = []
    while True:
        r = await http.get("/api/events", params={"per_page": 100, **({"after_cursor": cursor} if cursor else {})})
        if r.status_code in (421, 502, 503):  # the move's freeze or flip: ask again
            return seen, cursor
        assert r.status_code == 200, r.text
        if not r.json():
            return seen, cursor
        seen += r.json()
        cursor = r.headers["X-After-Cursor"]


async def test_a_consumer_sees_every_event_once_in_order_across_a_move(world):
    http, tenant, ledger, accounts = await _tenant(world, "mv-1")
    writer = Writer(http, ledger, accounts)
    consumed: list[dict] = []
    cursor: str | None = None
    stop = False

    async def consume() -> None:
        nonlocal cursor
        while not stop:
            page, cursor = await _follow(http, cursor)
            consumed.extend(page)
            await asyncio.sleep(0.02)

    tasks = [asyncio.create_task(writer.run()), asyncio.create_task(consume())]
    try:
        deadline = time.monotonic() + 30
        await writer.until_acked(100, deadline, tasks)
        assert (await _move_by_cli(world, tenant))["state"] == "done"
        await writer.until_acked(len(writer.acked) + 30, deadline + 120, tasks)  # written on the target
        writer.stop = True
        await tasks[0]
        expected = 3 + len(writer.acked)  # the ledger and its two accounts, then one created event per posting
        while len(consumed) < expected:
            assert time.monotonic() < deadline + 150 and not tasks[1].done(), f"{len(consumed)} of {expected}"
            await asyncio.sleep(0.05)
    finally:
        writer.stop = stop = True
        await asyncio.gather(*tasks)

    ids = [e["id"] for e in consumed]
    assert len(ids) == len(set(ids)) == expected  # once each
    created = [e["entity_id"] for e in consumed if e["event_name"] == "ledger_transaction.created"]
    assert sorted(created) == sorted(txn for txn, _ in writer.acked.values())
    everything, _ = await _follow(http, None)  # now all on the target, in the order the consumer saw
    assert [e["id"] for e in everything] == ids
    rows = await _db(world["cells"]["mv-2"], "SELECT position FROM events WHERE tenant_id = $1 ORDER BY position",
                     tenant)
    assert [r["position"] for r in rows] == list(range(1, expected + 1))
    await http.aclose()
