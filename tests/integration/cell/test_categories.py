"""Ledger account categories through the cell's HTTP API: balances summed over every account the category
graph reaches (nested, current and as of an effective time), the graph's rules (one ledger and currency, no
cycle), the list filters, idempotent creates and tenant isolation."""

from __future__ import annotations

import uuid

PATH = "/api/ledger_account_categories"


async def _category(api, ledger_id: str, normal_balance: str = "credit", currency: str = "USD", **extra) -> dict:
    r = await api.post(PATH, {"name": extra.pop("name", f"cat-{uuid.uuid4().hex[:6]}"), "ledger_id": ledger_id,
                              "normal_balance": normal_balance, "currency": currency, **extra})
    assert r.status_code == 201, r.text
    return r.json()


async def _put(api, category_id: str, kind: str, member_id: str, expect: int = 204):
    r = await api.request("PUT", f"{PATH}/{category_id}/{kind}/{member_id}")
    assert r.status_code == expect, r.text
    return r


async def _delete(api, category_id: str, kind: str, member_id: str, expect: int = 204):
    r = await api.request("DELETE", f"{PATH}/{category_id}/{kind}/{member_id}")
    assert r.status_code == expect, r.text
    return r


async def _balances(api, category_id: str, **params) -> dict:
    r = await api.get(f"{PATH}/{category_id}", params=params)
    assert r.status_code == 200, r.text
    return r.json()["balances"]


def _amounts(balances: dict) -> tuple[int, int, int]:
    return (balances["pending_balance"]["amount"], balances["posted_balance"]["amount"],
            balances["available_balance"]["amount"])


async def test_a_category_sums_the_accounts_it_reaches_through_nested_categories(api):
    ledger = await api.ledger()
    cash = await api.account(ledger["id"], "debit")
    alice = await api.account(ledger["id"], "credit")
    bob = await api.account(ledger["id"], "credit")
    wallets = await _category(api, ledger["id"], name="wallets")
    retail = await _category(api, ledger["id"], name="retail")
    await _put(api, wallets["id"], "ledger_account_categories", retail["id"])
    await _put(api, retail["id"], "ledger_accounts", alice["id"])
    await _put(api, wallets["id"], "ledger_accounts", bob["id"])
    assert (await api.transfer(ledger["id"], cash["id"], alice["id"], 700)).status_code == 201
    assert (await api.transfer(ledger["id"], cash["id"], bob["id"], 300, status="pending")).status_code == 201

    top = await _balances(api, wallets["id"])
    assert _amounts(top) == (1000, 700, 700)
    assert top["pending_balance"] == {"credits": 1000, "debits": 0, "amount": 1000, "currency": "USD",
                                      "currency_exponent": 2,
                                      "credits_string": "1000", "debits_string": "0", "amount_string": "1000"}
    assert _amounts(await _balances(api, retail["id"])) == (700, 700, 700)

    # An account reached twice (directly and through retail) counts once.
    await _put(api, wallets["id"], "ledger_accounts", alice["id"])
    assert _amounts(await _balances(api, wallets["id"])) == (1000, 700, 700)
    await _delete(api, retail["id"], "ledger_accounts", alice["id"])
    assert _amounts(await _balances(api, wallets["id"])) == (1000, 700, 700)
    assert _amounts(await _balances(api, retail["id"])) == (0, 0, 0)
    await _delete(api, wallets["id"], "ledger_accounts", alice["id"])
    assert _amounts(await _balances(api, wallets["id"])) == (300, 0, 0)

    # Un-nesting takes the nested category's accounts out of the parent.
    await _put(api, retail["id"], "ledger_accounts", alice["id"])
    assert _amounts(await _balances(api, wallets["id"])) == (1000, 700, 700)
    await _delete(api, wallets["id"], "ledger_account_categories", retail["id"])
    assert _amounts(await _balances(api, wallets["id"])) == (300, 0, 0)


async def test_balances_as_of_an_effective_time_count_backdated_entries(api):
    ledger = await api.ledger()
    cash = await api.account(ledger["id"], "debit")
    alice = await api.account(ledger["id"], "credit")
    cat = await _category(api, ledger["id"])
    await _put(api, cat["id"], "ledger_accounts", alice["id"])
    for amount, at in ((100, "2024-01-01T10:00:00Z"), (20, "2024-01-02T10:00:00Z"), (3, "2023-12-31T23:59:59Z")):
        r = await api.transfer(ledger["id"], cash["id"], alice["id"], amount, effective_at=at)
        assert r.status_code == 201, r.text
    assert _amounts(await _balances(api, cat["id"], **{"balances[effective_at]": "2024-01-01T10:00:00Z"})) == \
        (103, 103, 103)
    assert _amounts(await _balances(api, cat["id"], **{"balances[effective_at]": "2024-01-01T09:59:59Z"})) == \
        (3, 3, 3)
    assert _amounts(await _balances(api, cat["id"], **{"balances[as_of_date]": "2024-01-01"})) == (103, 103, 103)
    assert _amounts(await _balances(api, cat["id"])) == (123, 123, 123)
    # The listed categories carry the same balances.
    r = await api.get(PATH, params={"id[]": cat["id"], "balances[effective_at]": "2024-01-01T10:00:00Z"})
    assert r.status_code == 200 and _amounts(r.json()[0]["balances"]) == (103, 103, 103)


async def test_a_debit_normal_category_reads_its_sums_the_other_way(api):
    ledger = await api.ledger()
    cash = await api.account(ledger["id"], "debit")
    alice = await api.account(ledger["id"], "credit")
    assets = await _category(api, ledger["id"], "debit")
    await _put(api, assets["id"], "ledger_accounts", cash["id"])
    await _put(api, assets["id"], "ledger_accounts", alice["id"])
    assert (await api.transfer(ledger["id"], cash["id"], alice["id"], 50)).status_code == 201
    # Both sides of the posting are in the category: debits 50, credits 50.
    b = await _balances(api, assets["id"])
    assert (b["posted_balance"]["debits"], b["posted_balance"]["credits"], b["posted_balance"]["amount"]) == \
        (50, 50, 0)


async def test_the_graph_keeps_one_ledger_one_currency_and_no_cycle(api):
    ledger = await api.ledger()
    other = await api.ledger("other")
    usd = await _category(api, ledger["id"])
    eur = await _category(api, ledger["id"], currency="EUR")
    euro_account = await api.account(ledger["id"], currency="EUR")
    foreign = await api.account(other["id"])
    r = await _put(api, usd["id"], "ledger_accounts", euro_account["id"], 422)
    assert r.json()["code"] == "category_currency_mismatch"
    r = await _put(api, usd["id"], "ledger_account_categories", eur["id"], 422)
    assert r.json()["code"] == "category_currency_mismatch"
    r = await _put(api, usd["id"], "ledger_accounts", foreign["id"], 422)
    assert r.json()["code"] == "category_ledger_mismatch"
    mills = await api.account(ledger["id"], currency="USD", currency_exponent=3)
    r = await _put(api, usd["id"], "ledger_accounts", mills["id"], 422)
    assert r.json()["code"] == "category_currency_mismatch"

    a = await _category(api, ledger["id"])
    b = await _category(api, ledger["id"], ledger_account_category_ids=[a["id"]])
    c = await _category(api, ledger["id"], ledger_account_category_ids=[b["id"]])
    for parent, child in ((c, a), (b, a), (a, a)):
        r = await _put(api, parent["id"], "ledger_account_categories", child["id"], 422)
        assert r.json()["code"] == "category_cycle"
    r = await api.post(PATH, {"name": "x", "ledger_id": ledger["id"], "normal_balance": "credit", "currency": "USD",
                              "ledger_account_category_ids": [str(uuid.uuid4())]})
    assert r.status_code == 422 and r.json()["code"] == "ledger_account_category_not_found"
    r = await api.post(PATH, {"name": "x", "ledger_id": ledger["id"], "normal_balance": "credit", "currency": "USD",
                              "ledger_account_category_ids": [eur["id"]]})
    assert r.status_code == 422 and r.json()["code"] == "category_currency_mismatch"
    await _put(api, str(uuid.uuid4()), "ledger_accounts", euro_account["id"], 404)
    await _put(api, eur["id"], "ledger_accounts", str(uuid.uuid4()), 404)
    await _put(api, "not-an-id", "ledger_accounts", euro_account["id"], 404)


async def test_accounts_created_in_categories_and_the_lists_filtered_by_them(api):
    ledger = await api.ledger()
    top = await _category(api, ledger["id"], name="top", metadata={"kind": "group"}, external_id="top-1")
    sub = await _category(api, ledger["id"], name="sub", ledger_account_category_ids=[top["id"]])
    cash = await api.account(ledger["id"], "debit")
    alice = await api.account(ledger["id"], ledger_account_category_ids=[sub["id"]])
    bob = await api.account(ledger["id"], ledger_account_category_ids=[top["id"], sub["id"]])
    r = await api.post("/api/ledger_accounts", {"name": "x", "ledger_id": ledger["id"], "normal_balance": "credit",
                                                "currency": "EUR", "ledger_account_category_ids": [top["id"]]})
    assert r.status_code == 422 and r.json()["code"] == "category_currency_mismatch"
    t1 = await api.transfer(ledger["id"], cash["id"], alice["id"], 5)
    t2 = await api.transfer(ledger["id"], cash["id"], bob["id"], 7)
    await api.transfer(ledger["id"], cash["id"], (await api.account(ledger["id"]))["id"], 9)

    async def ids(path, **params):
        r = await api.get(path, params=params)
        assert r.status_code == 200, r.text
        return {item["id"] for item in r.json()}

    assert await ids("/api/ledger_accounts", ledger_account_category_id=top["id"]) == {alice["id"], bob["id"]}
    assert await ids("/api/ledger_transactions", ledger_account_category_id=top["id"]) == \
        {t1.json()["id"], t2.json()["id"]}
    entries = await ids("/api/ledger_entries", ledger_account_category_id=sub["id"])
    assert entries == {e["id"] for t in (t1, t2) for e in t.json()["ledger_entries"]
                       if e["ledger_account_id"] != cash["id"]}
    assert await ids(PATH, parent_ledger_account_category_id=top["id"]) == {sub["id"]}
    assert await ids(PATH, ledger_account_id=alice["id"]) == {top["id"], sub["id"]}
    assert await ids(PATH, ledger_account_id=cash["id"]) == set()
    assert await ids(PATH, name="top") == {top["id"]}
    assert await ids(PATH, external_id="top-1") == {top["id"]}
    assert await ids(PATH, **{"metadata[kind]": "group"}) == {top["id"]}
    assert await ids(PATH, currency="USD", ledger_id=ledger["id"]) == {top["id"], sub["id"]}
    assert await ids(PATH, **{"id[]": [sub["id"]]}) == {sub["id"]}
    r = await api.get(PATH, params={"nope": "1"})
    assert r.status_code == 400 and r.json()["code"] == "unknown_parameter"


async def test_pages_follow_the_cursor(api):
    ledger = await api.ledger()
    made = [(await _category(api, ledger["id"]))["id"] for _ in range(5)]
    seen, cursor = [], None
    while True:
        params = {"per_page": "2", **({"after_cursor": cursor} if cursor else {})}
        r = await api.get(PATH, params=params)
        assert r.status_code == 200, r.text
        seen += [c["id"] for c in r.json()]
        cursor = r.headers.get("x-after-cursor")
        if not cursor:
            break
    assert seen == made


async def test_update_delete_and_an_idempotent_create(api):
    ledger = await api.ledger()
    body = {"name": "fees", "ledger_id": ledger["id"], "normal_balance": "credit", "currency": "USD",
            "metadata": {"a": "1"}}
    first = await api.post(PATH, body, headers={"Idempotency-Key": "cat-1"})
    again = await api.post(PATH, body, headers={"Idempotency-Key": "cat-1"})
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    other = await api.post(PATH, {**body, "name": "other"}, headers={"Idempotency-Key": "cat-1"})
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    cat = first.json()
    assert cat["object"] == "ledger_account_category" and cat["discarded_at"] is None

    r = await api.patch(f"{PATH}/{cat['id']}", {"name": "fees2", "description": "d", "metadata": {"a": "", "b": "2"},
                                                "external_id": "fees"})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["description"], r.json()["metadata"], r.json()["external_id"]) == \
        ("fees2", "d", {"b": "2"}, "fees")
    dup = await api.post(PATH, {**body, "external_id": "fees"})
    assert dup.status_code == 409 and dup.json()["code"] == "external_id_taken"

    parent = await _category(api, ledger["id"])
    account = await api.account(ledger["id"])
    await _put(api, cat["id"], "ledger_accounts", account["id"])
    await _put(api, parent["id"], "ledger_account_categories", cat["id"])
    assert await _ids_of(api, ledger_account_id=account["id"]) == {cat["id"], parent["id"]}
    r = await api.request("DELETE", f"{PATH}/{cat['id']}")
    assert r.status_code == 200 and r.json()["discarded_at"] is not None
    assert (await api.get(f"{PATH}/{cat['id']}")).status_code == 404
    assert (await api.request("DELETE", f"{PATH}/{cat['id']}")).status_code == 404
    assert await _ids_of(api, ledger_account_id=account["id"]) == set()
    # Its external_id is free again.
    assert (await api.post(PATH, {**body, "external_id": "fees"})).status_code == 201


async def _ids_of(api, **params) -> set[str]:
    r = await api.get(PATH, params=params)
    assert r.status_code == 200, r.text
    return {c["id"] for c in r.json()}


async def test_another_tenants_category_is_not_found(new_tenant):
    alice, mallory = await new_tenant(), await new_tenant()
    ledger = await alice.ledger()
    cat = await _category(alice, ledger["id"])
    account = await alice.account(ledger["id"])
    mine = await mallory.ledger()
    my_cat = await _category(mallory, mine["id"])
    assert (await mallory.get(f"{PATH}/{cat['id']}")).status_code == 404
    assert (await mallory.patch(f"{PATH}/{cat['id']}", {"name": "x"})).status_code == 404
    assert (await mallory.request("DELETE", f"{PATH}/{cat['id']}")).status_code == 404
    await _put(mallory, cat["id"], "ledger_accounts", account["id"], 404)
    await _put(mallory, my_cat["id"], "ledger_accounts", account["id"], 404)
    await _put(mallory, my_cat["id"], "ledger_account_categories", cat["id"], 404)
    assert await _ids_of(mallory) == {my_cat["id"]}


async def test_verify_finds_a_closure_that_differs_from_the_graph(api, admin_conn):
    from cell.store.verify import verify

    ledger = await api.ledger()
    cash, alice = await api.account(ledger["id"], "debit"), await api.account(ledger["id"])
    cat = await _category(api, ledger["id"])
    await _put(api, cat["id"], "ledger_accounts", alice["id"])
    await api.transfer(ledger["id"], cash["id"], alice["id"], 10)
    assert await verify(admin_conn, api.tenant_id) == []

    # Broken on purpose, then mended (the fixture verifies the tenant after the test).
    broken = "UPDATE ledger_account_category_closure SET reachable = $2 WHERE category_id = $1"
    await admin_conn.execute(broken, uuid.UUID(cat["id"]), False)
    try:
        problems = await verify(admin_conn, api.tenant_id)
    finally:
        await admin_conn.execute(broken, uuid.UUID(cat["id"]), True)
    assert any(f"category {cat['id']}: closure lacks account {alice['id']}" in p for p in problems), problems
    assert any(f"category {cat['id']}: balances" in p for p in problems), problems


async def test_concurrent_changes_to_the_graph_leave_the_closure_equal_to_it(api):
    import asyncio

    ledger = await api.ledger()
    top, left, right = [await _category(api, ledger["id"]) for _ in range(3)]
    accounts = [await api.account(ledger["id"]) for _ in range(20)]
    calls = [_put(api, (left if i % 2 else right)["id"], "ledger_accounts", a["id"]) for i, a in enumerate(accounts)]
    calls += [_put(api, top["id"], "ledger_account_categories", left["id"]),
              _put(api, top["id"], "ledger_account_categories", right["id"])]
    await asyncio.gather(*calls)
    listed = await api.get("/api/ledger_accounts", params={"ledger_account_category_id": top["id"], "per_page": "100"})
    assert {a["id"] for a in listed.json()} == {a["id"] for a in accounts}
    # The fixture's verification then finds every closure equal to its graph.
