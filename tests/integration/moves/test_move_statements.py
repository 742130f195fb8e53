"""A tenant's statements move whole: on the target a statement lists the transaction versions it listed on the source,
and none written there after the move (its snapshot names the source's transactions; 0217)."""

from __future__ import annotations

import test_move_under_load
from test_move_under_load import _tenant

from control_plane.moves import plan_move, run_move, start_move

world = test_move_under_load.world  # the two cells, the router and the control plane of the move tests


async def test_a_statement_lists_the_same_versions_after_a_move(world):
    http, tenant, ledger, (cash, revenue) = await _tenant(world, "mv-1")
    r = await http.post("/api/ledger_transactions", json={"status": "pending", "effective_at": "2024-01-05T00:00:00Z",
                                                          "ledger_entries": [
        {"ledger_account_id": cash, "direction": "debit", "amount": 5},
        {"ledger_account_id": revenue, "direction": "credit", "amount": 5}]})
    assert r.status_code == 201, r.text
    pending = r.json()["id"]
    r = await http.post("/api/ledger_account_statements", json={
        "ledger_account_id": revenue, "effective_at_lower_bound": "2024-01-01T00:00:00Z",
        "effective_at_upper_bound": "2024-02-01T00:00:00Z"})
    assert r.status_code == 201, r.text
    statement = r.json()

    async def versions() -> list[tuple[str, int]]:
        r = await http.get("/api/ledger_transaction_versions", params={"ledger_account_statement_id": statement["id"]})
        assert r.status_code == 200, r.text
        return [(v["ledger_transaction_id"], v["version"]) for v in r.json()]

    assert await versions() == [(pending, 1)]
    move = await start_move(world["conn"], world["settings"],
                            await plan_move(world["conn"], world["settings"], tenant, "mv-2"))
    result = await run_move(world["conn"], world["settings"], move["id"])
    assert result["state"] == "done", result

    assert (await http.get(f"/api/ledger_account_statements/{statement['id']}")).json() == statement
    assert await versions() == [(pending, 1)]
    r = await http.patch(f"/api/ledger_transactions/{pending}", json={"metadata": {"after": "move"}})
    assert r.status_code == 200 and r.json()["version"] == 2, r.text
    assert await versions() == [(pending, 1)]
    await http.aclose()
