"""POST/GET /api/ledger_account_statements: an account's balances at both ends of [lower, upper) frozen at its
lock version then; GET /api/ledger_entries?ledger_account_statement_id= lists exactly its entries, and
GET /api/ledger_transaction_versions?ledger_account_statement_id= their transactions' versions as they stood."""

from __future__ import annotations

import asyncpg
import pytest

from cell.store.verify import verify


def _at(day: str) -> str:
    return f"2024-{day}T12:00:00Z"


async def _setup(api):
    ledger = (await api.ledger())["id"]
    wallet = (await api.account(ledger, "credit"))["id"]
    cash = (await api.account(ledger, "debit"))["id"]

    async def pay(amount: int, day: str, status: str = "posted") -> dict:
        r = await api.transfer(ledger, cash, wallet, amount, status=status, effective_at=_at(day))
        assert r.status_code == 201, r.text
        return r.json()

    return ledger, wallet, cash, pay


async def _statement(api, account: str, lower: str, upper: str, **extra):
    return await api.post("/api/ledger_account_statements", {
        "ledger_account_id": account, "effective_at_lower_bound": lower, "effective_at_upper_bound": upper, **extra})


async def _entry_ids(api, statement_id: str) -> list[str]:
    r = await api.get("/api/ledger_entries", params={"ledger_account_statement_id": statement_id})
    assert r.status_code == 200, r.text
    return [e["id"] for e in r.json()]


def _leg(txn: dict, account: str) -> str:
    return next(e["id"] for e in txn["ledger_entries"] if e["ledger_account_id"] == account)


async def test_a_statement_holds_the_balances_at_its_bounds_and_exactly_its_entries(api):
    ledger, wallet, _, pay = await _setup(api)
    await pay(100, "01-05")
    held = await pay(50, "01-15", status="pending")
    captured = await pay(20, "01-20")
    await pay(30, "02-01")  # at the upper bound: excluded (exclusive)

    r = await _statement(api, wallet, "2024-01-10T00:00:00Z", _at("02-01"), description="January",
                         metadata={"period": "2024-01"})
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["object"] == "ledger_account_statement" and s["ledger_id"] == ledger
    assert s["ledger_account_id"] == wallet and s["ledger_account_normal_balance"] == "credit"
    assert s["ledger_account_lock_version"] == 4
    assert (s["description"], s["metadata"]) == ("January", {"period": "2024-01"})
    start, end = s["starting_balance"], s["ending_balance"]
    assert (start["posted_balance"]["amount"], start["pending_balance"]["amount"]) == (100, 100)
    assert (end["posted_balance"]["amount"], end["pending_balance"]["amount"]) == (120, 170)
    assert end["pending_balance"] == {"credits": 170, "debits": 0, "amount": 170, "currency": "USD",
                                      "currency_exponent": 2,
                                      "credits_string": "170", "debits_string": "0", "amount_string": "170"}
    assert end["available_balance"]["amount"] == 120
    assert sorted(await _entry_ids(api, s["id"])) == sorted([_leg(held, wallet), _leg(captured, wallet)])

    got = await api.get(f"/api/ledger_account_statements/{s['id']}")
    assert got.status_code == 200 and got.json() == s


async def test_later_backdated_entries_and_archives_change_no_statement(api):
    _, wallet, _, pay = await _setup(api)
    held = await pay(50, "01-15", status="pending")
    s = (await _statement(api, wallet, _at("01-01"), _at("02-01"))).json()
    entries = await _entry_ids(api, s["id"])

    backdated = await pay(7, "01-20")
    r = await api.patch(f"/api/ledger_transactions/{held['id']}", {"status": "archived"})
    assert r.status_code == 200, r.text
    assert (await api.get(f"/api/ledger_account_statements/{s['id']}")).json() == s
    assert await _entry_ids(api, s["id"]) == entries == [_leg(held, wallet)]

    later = (await _statement(api, wallet, _at("01-01"), _at("02-01"))).json()
    assert later["ending_balance"]["pending_balance"]["amount"] == 7
    assert later["ledger_account_lock_version"] == s["ledger_account_lock_version"] + 2
    assert await _entry_ids(api, later["id"]) == [_leg(backdated, wallet)]


async def test_the_versions_of_a_statements_transactions_as_they_stood(api):
    _, wallet, _, pay = await _setup(api)
    held = await pay(50, "01-15", status="pending")
    await pay(9, "03-01")  # outside the range
    s = (await _statement(api, wallet, _at("01-01"), _at("02-01"))).json()
    await api.patch(f"/api/ledger_transactions/{held['id']}", {"status": "posted"})
    r = await api.get("/api/ledger_transaction_versions", params={"ledger_account_statement_id": s["id"]})
    assert r.status_code == 200, r.text
    assert [(v["ledger_transaction_id"], v["version"], v["status"]) for v in r.json()] == [(held["id"], 1, "pending")]


async def test_a_retried_create_answers_the_same_statement(api):
    _, wallet, _, pay = await _setup(api)
    await pay(5, "01-15")
    body = {"ledger_account_id": wallet, "effective_at_lower_bound": _at("01-01"),
            "effective_at_upper_bound": _at("02-01")}
    first = await api.post("/api/ledger_account_statements", body, headers={"Idempotency-Key": "stmt-1"})
    await pay(5, "01-16")
    again = await api.post("/api/ledger_account_statements", body, headers={"Idempotency-Key": "stmt-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    other = await api.post("/api/ledger_account_statements", {**body, "description": "x"},
                           headers={"Idempotency-Key": "stmt-1"})
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


async def test_refusals_are_problems_with_stable_codes(api, new_tenant):
    _, wallet, _, _ = await _setup(api)
    bad_range = await _statement(api, wallet, _at("02-01"), _at("01-01"))
    assert bad_range.status_code == 400 and bad_range.json()["code"] == "invalid_range"
    no_zone = await _statement(api, wallet, "2024-01-01T00:00:00", _at("01-01"))
    assert no_zone.status_code == 400
    unknown = await _statement(api, "00000000-0000-4000-8000-000000000000", _at("01-01"), _at("02-01"))
    assert unknown.status_code == 422 and unknown.json()["code"] == "ledger_account_not_found"
    extra = await _statement(api, wallet, _at("01-01"), _at("02-01"), currency="USD")
    assert extra.status_code == 400

    s = (await _statement(api, wallet, _at("01-01"), _at("02-01"))).json()
    other = await new_tenant()
    assert (await other.get(f"/api/ledger_account_statements/{s['id']}")).status_code == 404
    assert (await _statement(other, wallet, _at("01-01"), _at("02-01"))).status_code == 422
    assert await _entry_ids(other, s["id"]) == []
    assert (await api.get("/api/ledger_account_statements/not-an-id")).status_code == 404


async def test_statements_are_immutable_and_verify_recomputes_them(api, admin_conn):
    _, wallet, _, pay = await _setup(api)
    await pay(5, "01-15")
    s = (await _statement(api, wallet, _at("01-01"), _at("02-01"))).json()
    with pytest.raises(asyncpg.PostgresError, match="insert-only"):
        await admin_conn.execute("UPDATE ledger_account_statements SET description = 'x' WHERE id = $1", s["id"])
    await admin_conn.execute("ALTER TABLE ledger_account_statements DISABLE TRIGGER ledger_account_statements_insert_only")
    try:
        await admin_conn.execute("UPDATE ledger_account_statements SET ending_posted_credits = 6 WHERE id = $1", s["id"])
        problems = await verify(admin_conn, api.tenant_id)
        assert any(s["id"] in p for p in problems), problems
        await admin_conn.execute("UPDATE ledger_account_statements SET ending_posted_credits = 5 WHERE id = $1", s["id"])
    finally:
        await admin_conn.execute("ALTER TABLE ledger_account_statements ENABLE TRIGGER ledger_account_statements_insert_only")
    assert await verify(admin_conn, api.tenant_id) == []


async def _until_lock_waits(conn, count: int, timeout_s: float = 20.0) -> None:
    """Until `count` backends of this database wait for a lock (a bound on waiting, not a speed assertion)."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout_s
    while await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                              "AND datname = current_database()") < count:
        assert time.monotonic() < deadline, f"fewer than {count} requests ever waited for the held lock"
        await asyncio.sleep(0.01)


async def test_a_version_committed_after_the_statement_is_not_one_of_its_versions(live_api, cell_database_url):
    # A PATCH of the statement's pending transaction began before the statement was created, and committed after it
    # (held here on the transaction's row): its version did not exist when the statement was made.
    import asyncio
    import uuid

    api = live_api
    _, wallet, _, pay = await _setup(api)
    held = await pay(50, "01-15", status="pending")
    holder = await asyncpg.connect(cell_database_url)
    try:
        lock = holder.transaction()
        await lock.start()
        await holder.execute("SELECT 1 FROM ledger_transactions WHERE id = $1 FOR UPDATE", uuid.UUID(held["id"]))
        patching = asyncio.create_task(api.patch(f"/api/ledger_transactions/{held['id']}", {"metadata": {"k": "v"}}))
        await _until_lock_waits(holder, 1)
        s = await _statement(api, wallet, _at("01-01"), _at("02-01"))
        assert s.status_code == 201, s.text
        await lock.rollback()
        patched = await patching
    finally:
        await holder.close()
    assert patched.status_code == 200 and patched.json()["version"] == 2, patched.text
    r = await api.get("/api/ledger_transaction_versions", params={"ledger_account_statement_id": s.json()["id"]})
    assert r.status_code == 200, r.text
    assert [(v["ledger_transaction_id"], v["version"]) for v in r.json()] == [(held["id"], 1)]
