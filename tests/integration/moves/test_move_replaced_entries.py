"""A tenant whose pending transactions' entries were replaced moves whole: the discarded entries stay discarded on
the target (the mover's balance check and the target's invariants count them as archived), and the transaction's
entries there are its new ones."""

from __future__ import annotations

import test_move_under_load
from test_move_bounds import _connect, _steps
from test_move_under_load import _tenant

from control_plane.moves import Mover, discover, fetch_move, plan_move, run_move, start_move

world = test_move_under_load.world  # the two cells, the router and the control plane of the move tests


def _entries(cash: str, revenue: str, amount: int) -> list[dict]:
    return [{"ledger_account_id": cash, "direction": "debit", "amount": amount},
            {"ledger_account_id": revenue, "direction": "credit", "amount": amount}]


async def test_replaced_entries_move_discarded(world):
    http, tenant, ledger, (cash, revenue) = await _tenant(world, "mv-1")
    ids = []
    for amount, status in ((10, "posted"), (20, "pending"), (30, "archived")):
        r = await http.post("/api/ledger_transactions", json={"status": "pending", "ledger_entries": _entries(
            cash, revenue, amount)})
        assert r.status_code == 201, r.text
        r = await http.patch(f"/api/ledger_transactions/{r.json()['id']}",
                             json={"ledger_entries": _entries(cash, revenue, amount + 1)})
        assert r.status_code == 200, r.text
        if status != "pending":
            r = await http.patch(f"/api/ledger_transactions/{r.json()['id']}", json={"status": status})
            assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
    fresh = {"balances[include_unapplied]": "true"}  # the cells are hybrid: their workers apply in batches
    before = (await http.get(f"/api/ledger_accounts/{revenue}", params=fresh)).json()["balances"]
    assert (before["pending_balance"]["amount"], before["posted_balance"]["amount"]) == (11 + 21, 11)

    move = await start_move(world["conn"], world["settings"],
                            await plan_move(world["conn"], world["settings"], tenant, "mv-2"))
    result = await run_move(world["conn"], world["settings"], move["id"])
    assert result["state"] == "done", result

    assert (await http.get(f"/api/ledger_accounts/{revenue}", params=fresh)).json()["balances"] == before
    entries = (await http.get("/api/ledger_entries", params={"ledger_account_id": revenue})).json()
    assert sorted((e["amount"], e["status"]) for e in entries) == [(11, "posted"), (21, "pending"), (31, "archived")]
    every = (await http.get("/api/ledger_entries", params={"ledger_account_id": revenue,
                                                           "show_deleted": "true"})).json()
    assert sorted((e["amount"], e["status"], e["discarded_at"] is not None) for e in every) == [
        (10, "archived", True), (11, "posted", False), (20, "archived", True), (21, "pending", False),
        (30, "archived", True), (31, "archived", False)]
    r = await http.patch(f"/api/ledger_transactions/{ids[1]}", json={"ledger_entries": _entries(cash, revenue, 22)})
    assert r.status_code == 200, r.text  # replaced again, on the target
    after = (await http.get(f"/api/ledger_accounts/{revenue}", params=fresh)).json()["balances"]
    assert after["pending_balance"]["amount"] == 33
    await http.aclose()


async def test_entries_replaced_during_a_move_are_checked_and_copied_discarded(world):
    """A replacement between the mover's rounds touches the transaction: the freeze's delta check recomputes its
    entries' effects on the target (a discarded entry's: created and archived) and the move verifies."""
    http, tenant, ledger, (cash, revenue) = await _tenant(world, "mv-1")
    r = await http.post("/api/ledger_transactions", json={"status": "pending", "ledger_entries": _entries(
        cash, revenue, 40)})
    assert r.status_code == 201, r.text
    txn = r.json()["id"]
    move = await start_move(world["conn"], world["settings"],
                            await plan_move(world["conn"], world["settings"], tenant, "mv-2"))
    mover = Mover(world["conn"], world["settings"], await fetch_move(world["conn"], move["id"]))
    mover.src, mover.dst = await _connect(world["cells"]["mv-1"]), await _connect(world["cells"]["mv-2"])
    mover.tables = await discover(mover.src)
    try:
        await _steps(mover, "catch_up")
        await _steps(mover, "pre_verify")
        await _steps(mover, "catch_up")
        r = await http.patch(f"/api/ledger_transactions/{txn}", json={"ledger_entries": _entries(cash, revenue, 45)})
        assert r.status_code == 200, r.text
        await _steps(mover, "freeze")
        await _steps(mover, "final_catch_up")
        await _steps(mover, "flip")
        assert mover.w["versions_touched"]  # the replacement's transaction was checked after its round
        assert mover.w["verification"]["ok"], mover.w["verification"]["problems"]
        await _steps(mover, "done")
        await mover.finish()
    finally:
        await mover.src.close()
        await mover.dst.close()
    fresh = {"balances[include_unapplied]": "true"}
    balances = (await http.get(f"/api/ledger_accounts/{revenue}", params=fresh)).json()["balances"]
    assert balances["pending_balance"]["amount"] == 45
    await http.aclose()
