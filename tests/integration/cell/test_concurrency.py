"""Concurrency over a real server: balance locks hold exactly, opposite transfers never deadlock, and
cursor pagination neither repeats nor skips while rows are being inserted."""

import asyncio



async def test_fifty_concurrent_locked_debits_on_an_account_funded_for_twenty(live_api):
    api = live_api
    ledger = await api.ledger()
    wallet = await api.account(ledger["id"], "credit")
    funding = await api.account(ledger["id"], "debit")
    merchant = await api.account(ledger["id"], "credit")
    r = await api.transfer(ledger["id"], funding["id"], wallet["id"], 20 * 100)
    assert r.status_code == 201

    async def spend():
        return await api.post("/api/ledger_transactions", {
            "ledger_id": ledger["id"], "status": "posted", "ledger_entries": [
                {"ledger_account_id": wallet["id"], "direction": "debit", "amount": 100,
                 "available_balance_amount": {"gte": 0}},
                {"ledger_account_id": merchant["id"], "direction": "credit", "amount": 100}]})

    responses = await asyncio.gather(*[spend() for _ in range(50)])
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 20, statuses
    assert statuses.count(422) == 30
    assert all(r.json()["code"] == "balance_lock_failed" for r in responses if r.status_code == 422)
    b = await api.balances(wallet["id"])
    assert b["available_balance"]["amount"] == 0
    assert b["posted_balance"]["amount"] == 0
    assert (await api.balances(merchant["id"]))["posted_balance"]["amount"] == 2000
    versions = sorted(e["ledger_account_lock_version"] for r in responses if r.status_code == 201
                      for e in r.json()["ledger_entries"] if e["ledger_account_id"] == wallet["id"])
    assert versions == list(range(2, 22))


async def test_transfers_in_opposite_directions_never_deadlock(live_api):
    api = live_api
    ledger = await api.ledger()
    a = await api.account(ledger["id"], "debit")
    b = await api.account(ledger["id"], "debit")
    c = await api.account(ledger["id"], "debit")
    pairs = [(a, b), (b, a), (b, c), (c, a), (a, c), (c, b)] * 10
    responses = await asyncio.gather(*[api.post("/api/ledger_transactions", {
        "ledger_id": ledger["id"], "status": "posted", "ledger_entries": [
            {"ledger_account_id": x["id"], "direction": "debit", "amount": 7, "lock_version": None},
            {"ledger_account_id": y["id"], "direction": "credit", "amount": 7,
             "show_resulting_ledger_account_balances": True}]}) for x, y in pairs])
    assert [r.status_code for r in responses] == [201] * len(pairs)
    total = sum([(await api.balances(x["id"]))["posted_balance"]["amount"] for x in (a, b, c)])
    assert total == 0


async def test_lock_version_is_an_optimistic_lock(live_api):
    api = live_api
    ledger = await api.ledger()
    a, b = await api.account(ledger["id"], "debit"), await api.account(ledger["id"], "credit")
    await api.transfer(ledger["id"], a["id"], b["id"], 10)
    version = (await api.get(f"/api/ledger_accounts/{a['id']}")).json()["lock_version"]
    assert version == 1

    async def attempt():
        return await api.post("/api/ledger_transactions", {
            "ledger_id": ledger["id"], "status": "posted", "ledger_entries": [
                {"ledger_account_id": a["id"], "direction": "debit", "amount": 5, "lock_version": version},
                {"ledger_account_id": b["id"], "direction": "credit", "amount": 5}]})

    responses = await asyncio.gather(*[attempt() for _ in range(10)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [422] * 9
    assert {r.json()["code"] for r in responses if r.status_code == 422} == {"lock_version_mismatch"}


async def test_pagination_has_no_duplicates_or_gaps_under_concurrent_inserts(live_api):
    api = live_api
    ledger = await api.ledger()
    a, b = await api.account(ledger["id"], "debit"), await api.account(ledger["id"], "credit")
    before = [(await api.transfer(ledger["id"], a["id"], b["id"], 1)).json()["id"] for _ in range(30)]
    seen: list[str] = []
    cursor = None

    async def writer():
        for _ in range(30):
            await api.transfer(ledger["id"], a["id"], b["id"], 1)

    task = asyncio.create_task(writer())
    while True:
        params = {"ledger_id": ledger["id"], "per_page": 7}
        if cursor:
            params["after_cursor"] = cursor
        r = await api.get("/api/ledger_transactions", params=params)
        assert r.status_code == 200
        seen += [t["id"] for t in r.json()]
        cursor = r.headers.get("x-after-cursor")
        if cursor is None:
            break
    await task
    assert len(seen) == len(set(seen)), "a transaction was listed twice"
    assert set(before) <= set(seen), "a transaction that existed before paging was skipped"


async def test_identical_concurrent_patches_make_one_version(live_api):
    api = live_api
    ledger = await api.ledger()
    a, b = await api.account(ledger["id"], "debit"), await api.account(ledger["id"], "credit")
    txn = (await api.transfer(ledger["id"], a["id"], b["id"], 10, status="pending")).json()
    path = f"/api/ledger_transactions/{txn['id']}"
    responses = await asyncio.gather(*[api.patch(path, {"metadata": {"k": "v"}}) for _ in range(32)])
    assert [r.status_code for r in responses] == [200] * 32, [r.text for r in responses if r.status_code != 200]
    versions = (await api.get(f"{path}/versions")).json()
    assert [(v["version"], v["metadata"]) for v in versions] == [(1, {}), (2, {"k": "v"})]
    assert {r.json()["version"] for r in responses} == {2}
