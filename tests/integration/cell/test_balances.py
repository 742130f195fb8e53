"""Historical balances: effective time (with backdating), ranges, lock versions, resulting balances,
statements from entries, and balance filters on lists."""

T0 = "2026-03-01T00:00:00Z"


async def post_at(api, ledger, debit, credit, amount, at, status="posted"):
    r = await api.transfer(ledger["id"], debit["id"], credit["id"], amount, status=status, effective_at=at)
    assert r.status_code == 201, r.text
    return r.json()


async def test_effective_time_balances_include_backdated_entries(api, books):
    ledger, cash, rev = books
    await post_at(api, ledger, cash, rev, 100, "2026-03-01T10:00:00Z")
    await post_at(api, ledger, cash, rev, 200, "2026-03-03T10:00:00Z")
    await post_at(api, ledger, cash, rev, 50, "2026-03-02T09:00:00Z")  # backdated, posted last

    async def at(ts):
        return (await api.balances(rev["id"], **{"balances[effective_at]": ts}))["posted_balance"]["amount"]

    assert await at("2026-02-28T00:00:00Z") == 0
    assert await at("2026-03-01T10:00:00Z") == 100  # inclusive
    assert await at("2026-03-01T09:59:59Z") == 0
    assert await at("2026-03-02T12:00:00Z") == 150
    assert await at("2026-03-02T09:00:00+00:00") == 150
    assert await at("2026-03-05T00:00:00Z") == 350
    assert (await api.balances(rev["id"]))["posted_balance"]["amount"] == 350


async def test_effective_time_range_is_lower_inclusive_upper_exclusive(api, books):
    ledger, cash, rev = books
    for amount, at in ((1, "2026-03-01T00:00:00Z"), (10, "2026-03-02T00:00:00Z"), (100, "2026-03-03T00:00:00Z")):
        await post_at(api, ledger, cash, rev, amount, at)
    b = await api.balances(rev["id"], **{"balances[effective_at_lower_bound]": "2026-03-01T00:00:00Z",
                                         "balances[effective_at_upper_bound]": "2026-03-03T00:00:00Z"})
    assert b["posted_balance"]["amount"] == 11
    b = await api.balances(rev["id"], **{"balances[effective_at_lower_bound]": "2026-03-02T00:00:00Z"})
    assert b["posted_balance"]["amount"] == 110
    r = await api.get(f"/api/ledger_accounts/{rev['id']}", params={
        "balances[effective_at_lower_bound]": "2026-03-03T00:00:00Z",
        "balances[effective_at_upper_bound]": "2026-03-01T00:00:00Z"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_range"


async def test_as_of_lock_version_returns_the_balance_right_after_that_version(api, books):
    ledger, cash, rev = books
    for amount in (5, 7, 11):
        await api.transfer(ledger["id"], cash["id"], rev["id"], amount)
    amounts = [(await api.balances(rev["id"], **{"balances[as_of_lock_version]": v}))["posted_balance"]["amount"]
               for v in range(0, 4)]
    assert amounts == [0, 5, 12, 23]
    r = await api.get(f"/api/ledger_accounts/{rev['id']}", params={"balances[as_of_lock_version]": 9})
    assert r.status_code == 400 and r.json()["code"] == "lock_version_not_found"
    # The entries an account held at a version it never had: refused alike, not today's entries.
    entries = {"ledger_account_id": rev["id"], "as_of_lock_version": 3}
    assert len((await api.get("/api/ledger_entries", params=entries)).json()) == 3
    r = await api.get("/api/ledger_entries", params={**entries, "as_of_lock_version": 9})
    assert r.status_code == 400 and r.json()["code"] == "lock_version_not_found", r.text


async def test_resulting_balances_on_request_and_in_statements(api, books):
    ledger, cash, rev = books
    r = await api.post("/api/ledger_transactions", {"ledger_id": ledger["id"], "status": "posted", "ledger_entries": [
        {"ledger_account_id": cash["id"], "direction": "debit", "amount": 40},
        {"ledger_account_id": rev["id"], "direction": "credit", "amount": 40,
         "show_resulting_ledger_account_balances": True}]})
    entries = {e["ledger_account_id"]: e for e in r.json()["ledger_entries"]}
    assert entries[cash["id"]]["resulting_ledger_account_balances"] is None
    assert entries[rev["id"]]["resulting_ledger_account_balances"]["posted_balance"]["amount"] == 40
    await api.transfer(ledger["id"], cash["id"], rev["id"], 2, status="pending")
    await api.transfer(ledger["id"], rev["id"], cash["id"], 10)
    statement = (await api.get("/api/ledger_entries", params={"ledger_account_id": rev["id"],
                                                              "show_balances": "true"})).json()
    assert [(e["ledger_account_lock_version"], e["direction"], e["amount"],
             e["resulting_ledger_account_balances"]["pending_balance"]["amount"],
             e["resulting_ledger_account_balances"]["posted_balance"]["amount"]) for e in statement] == [
        (1, "credit", 40, 40, 40), (2, "credit", 2, 42, 40), (3, "debit", 10, 32, 30)]
    older = (await api.get("/api/ledger_entries", params={"ledger_account_id": rev["id"], "as_of_lock_version": 2})).json()
    assert [e["ledger_account_lock_version"] for e in older] == [1, 2]
    one = (await api.get(f"/api/ledger_entries/{statement[2]['id']}", params={"show_balances": "true"})).json()
    assert one == statement[2]


async def test_entries_can_be_ordered_by_effective_time_and_paged(api, books):
    ledger, cash, rev = books
    for at in ("2026-03-03T00:00:00Z", "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"):
        await post_at(api, ledger, cash, rev, 1, at)
    seen = []
    cursor = None
    while True:
        params = {"ledger_account_id": rev["id"], "order_by[effective_at]": "desc", "per_page": 2}
        if cursor:
            params["after_cursor"] = cursor
        r = await api.get("/api/ledger_entries", params=params)
        seen += [e["effective_at"] for e in r.json()]
        cursor = r.headers.get("x-after-cursor")
        if not cursor:
            break
    assert seen == ["2026-03-03T00:00:00Z", "2026-03-02T00:00:00Z", "2026-03-01T00:00:00Z"]


async def test_accounts_can_be_filtered_by_balance_and_metadata(api):
    ledger = await api.ledger()
    funding = await api.account(ledger["id"], "debit")
    rich = await api.account(ledger["id"], "credit", metadata={"tier": "gold"})
    poor = await api.account(ledger["id"], "credit", metadata={"tier": "basic"})
    await api.transfer(ledger["id"], funding["id"], rich["id"], 500)
    await api.transfer(ledger["id"], poor["id"], funding["id"], 20)  # poor is overdrawn
    ids = lambda r: {a["id"] for a in r.json()}  # noqa: E731
    r = await api.get("/api/ledger_accounts", params={"ledger_id": ledger["id"], "available_balance_amount[lt]": "0"})
    assert ids(r) == {poor["id"]}  # funding (debit-normal) is at +480
    r = await api.get("/api/ledger_accounts", params={"ledger_id": ledger["id"],
                                                      "posted_balance_amount[gte]": "500", "metadata[tier]": "gold"})
    assert ids(r) == {rich["id"]}
    r = await api.get("/api/ledger_accounts", params={"ledger_id": ledger["id"],
                                                      "posted_balance_amount[not_eq]": "480"})
    assert ids(r) == {rich["id"], poor["id"]}
    listed = {a["id"]: a for a in (await api.get("/api/ledger_accounts", params={"ledger_id": ledger["id"]})).json()}
    assert listed[rich["id"]]["balances"]["posted_balance"]["amount"] == 500


async def test_account_update_keeps_what_is_not_named(api):
    ledger = await api.ledger()
    acct = await api.account(ledger["id"], "credit", metadata={"a": "1"}, description="d")
    r = await api.patch(f"/api/ledger_accounts/{acct['id']}", {"name": "renamed", "metadata": {"b": "2"}})
    assert r.status_code == 200
    body = r.json()
    assert (body["name"], body["description"], body["metadata"], body["currency"]) == ("renamed", "d",
                                                                                       {"a": "1", "b": "2"}, "USD")
    r = await api.patch(f"/api/ledger_accounts/{acct['id']}", {"currency": "EUR"})
    assert r.status_code == 400


async def test_a_posting_that_would_take_a_balance_past_64_bits_is_refused(api, books):
    """Three postings of 2^63 - 1: the second would take both accounts' pending sums past the signed 64-bit
    range (their first posting still queued or not), so it is refused whole and the balances stay readable."""
    ledger, debit, credit = books
    top = 2**63 - 1
    r = await api.transfer(ledger["id"], debit["id"], credit["id"], top)
    assert r.status_code == 201, r.text
    for sync in (False, True):
        extra = {"show_resulting_ledger_account_balances": True} if sync else {}
        r = await api.post("/api/ledger_transactions", {
            "ledger_id": ledger["id"], "status": "posted", "ledger_entries": [
                {"ledger_account_id": debit["id"], "direction": "debit", "amount": top, **extra},
                {"ledger_account_id": credit["id"], "direction": "credit", "amount": top}]})
        assert r.status_code == 422 and r.json()["code"] == "balance_overflow", r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    # The other direction still has room: a transfer back is fine, and balances are exactly what was posted.
    r = await api.transfer(ledger["id"], credit["id"], debit["id"], top)
    assert r.status_code == 201, r.text
    b = (await api.get(f"/api/ledger_accounts/{debit['id']}", params={"balances[include_unapplied]": "true"})).json()
    assert b["balances"]["pending_balance"] == {"credits": top, "debits": top, "amount": 0, "currency": "USD",
                                               "currency_exponent": 2, "credits_string": str(top),
                                               "debits_string": str(top), "amount_string": "0"}


async def test_two_postings_in_flight_together_cannot_take_a_balance_past_64_bits(live_api, cell_database_url):
    """Each of two 5e18 debits fits alone; together they pass 2^63 - 1. With the first still in flight (waiting for
    another account's row, held here) when the second is checked, one of them is refused."""
    import asyncio

    import asyncpg

    api, big = live_api, 5 * 10**18
    ledger = (await api.ledger())["id"]
    x, z, w = [(await api.account(ledger, normal))["id"] for normal in ("debit", "credit", "credit")]

    def posting(other: str) -> dict:
        return {"ledger_id": ledger, "status": "posted", "ledger_entries": [
            {"ledger_account_id": x, "direction": "debit", "amount": big},
            {"ledger_account_id": other, "direction": "credit", "amount": big}]}

    async def waiting(conn, n: int) -> None:
        deadline = asyncio.get_running_loop().time() + 30
        while await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                  "AND datname = current_database()") < n:
            assert asyncio.get_running_loop().time() < deadline, f"fewer than {n} sessions waited"
            await asyncio.sleep(0.01)

    holder = await asyncpg.connect(cell_database_url)
    try:
        held = holder.transaction()
        await held.start()
        await holder.execute("SELECT 1 FROM account_balances WHERE account_id = $1::uuid FOR UPDATE", z)
        first = asyncio.ensure_future(api.post("/api/ledger_transactions", posting(z)))
        await waiting(holder, 1)  # checked, and waiting for z
        second = asyncio.ensure_future(api.post("/api/ledger_transactions", posting(w)))
        await waiting(holder, 2)
        await held.rollback()
        answers = await asyncio.gather(first, second)
    finally:
        await holder.close()
    assert sorted(r.status_code for r in answers) == [201, 422], [r.text for r in answers]
    assert [r.json()["code"] for r in answers if r.status_code == 422] == ["balance_overflow"]
    assert (await api.balances(x))["pending_balance"]["debits"] == big


async def test_in_hybrid_mode_a_lock_version_read_with_the_queued_entries_is_the_one_a_posting_is_checked_against(
        hybrid_api):
    """Optimistic concurrency on a hybrid cell: entries queued (no worker here), the plain read's lock_version is the
    applied one; the read with `balances[include_unapplied]` counts the queued entries in its lock_version too, and
    that is the version a posting's `lock_version` must name (one older is 422 lock_version_mismatch)."""
    api = hybrid_api
    ledger = (await api.ledger())["id"]
    cash, wallet = (await api.account(ledger, "debit"))["id"], (await api.account(ledger, "credit"))["id"]
    for amount in (5, 7):
        assert (await api.transfer(ledger, cash, wallet, amount)).status_code == 201  # queued
    plain = (await api.get(f"/api/ledger_accounts/{wallet}")).json()
    full = (await api.get(f"/api/ledger_accounts/{wallet}", params={"balances[include_unapplied]": "true"})).json()
    assert (plain["lock_version"], full["lock_version"]) == (0, 2), (plain, full)
    assert full["balances"]["posted_balance"]["amount"] == 12

    async def spend(version: int):
        return await api.post("/api/ledger_transactions", {"ledger_id": ledger, "status": "posted", "ledger_entries": [
            {"ledger_account_id": wallet, "direction": "debit", "amount": 3, "lock_version": version},
            {"ledger_account_id": cash, "direction": "credit", "amount": 3}]})

    stale = await spend(plain["lock_version"])
    assert stale.status_code == 422 and stale.json()["code"] == "lock_version_mismatch", stale.text
    r = await spend(full["lock_version"])
    assert r.status_code == 201, r.text
    after = (await api.get(f"/api/ledger_accounts/{wallet}", params={"balances[include_unapplied]": "true"})).json()
    assert after["lock_version"] == 3 and after["balances"]["posted_balance"]["amount"] == 9
