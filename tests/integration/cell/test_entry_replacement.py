"""A pending transaction's entries replaced (PATCH `ledger_entries` and/or `effective_at`, as Modern Treasury's SDK
sends it): the new entries are the transaction's, the old ones discarded (archived, shown with show_deleted), the
balances move from the one to the other in the same database transaction, and only a pending transaction changes.
The invariants (verify, after every test) recompute every balance from the entries that are their transaction's."""

from __future__ import annotations

import random

import pytest


def _entries(debit: str, credit: str, amount: int, **lock) -> list[dict]:
    return [{"ledger_account_id": debit, "direction": "debit", "amount": amount, **lock},
            {"ledger_account_id": credit, "direction": "credit", "amount": amount}]


async def _pending(api, books, amount: int, **extra) -> dict:
    ledger, cash, rev = books
    r = await api.transfer(ledger["id"], cash["id"], rev["id"], amount, status="pending", **extra)
    assert r.status_code == 201, r.text
    return r.json()


async def _replace(api, txn_id: str, entries: list[dict]) -> dict:
    r = await api.patch(f"/api/ledger_transactions/{txn_id}", {"ledger_entries": entries})
    assert r.status_code == 200, r.text
    return r.json()


async def _amounts(api, account_id: str) -> tuple[int, int]:
    b = await api.balances(account_id)
    return b["pending_balance"]["amount"], b["posted_balance"]["amount"]


async def test_a_pending_transactions_entries_are_replaced_and_the_old_ones_discarded(api, books):
    ledger, cash, rev = books
    txn = await _pending(api, books, 300)
    old_ids = {e["id"] for e in txn["ledger_entries"]}
    r = await api.patch(f"/api/ledger_transactions/{txn['id']}",
                        {"ledger_entries": _entries(cash["id"], rev["id"], 500), "metadata": {"auth": "2"}})
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["status"] == "pending" and changed["metadata"] == {"auth": "2"}
    assert sorted((e["ledger_account_id"], e["direction"], e["amount"]) for e in changed["ledger_entries"]) == sorted(
        [(cash["id"], "debit", 500), (rev["id"], "credit", 500)])
    new_ids = {e["id"] for e in changed["ledger_entries"]}
    assert not new_ids & old_ids and all(e["discarded_at"] is None for e in changed["ledger_entries"])
    assert await _amounts(api, rev["id"]) == (500, 0) and await _amounts(api, cash["id"]) == (500, 0)

    listed = (await api.get("/api/ledger_entries", params={"ledger_transaction_id": txn["id"]})).json()
    assert {e["id"] for e in listed} == new_ids
    everything = (await api.get("/api/ledger_entries", params={"ledger_transaction_id": txn["id"],
                                                               "show_deleted": "true"})).json()
    assert {e["id"] for e in everything} == new_ids | old_ids
    for e in everything:
        if e["id"] in old_ids:
            assert e["status"] == "archived" and e["discarded_at"] == changed["updated_at"], e
        else:
            assert e["status"] == "pending" and e["discarded_at"] is None, e
    one_old = (await api.get(f"/api/ledger_entries/{next(iter(old_ids))}")).json()
    assert one_old["status"] == "archived" and one_old["amount"] == 300 and one_old["discarded_at"]
    mine = (await api.get("/api/ledger_entries", params={"ledger_account_id": rev["id"]})).json()
    assert [e["amount"] for e in mine] == [500]

    r = await api.patch(f"/api/ledger_transactions/{txn['id']}", {"status": "posted"})
    assert r.status_code == 200, r.text
    assert await _amounts(api, rev["id"]) == (500, 500) and await _amounts(api, cash["id"]) == (500, 500)
    everything = (await api.get("/api/ledger_entries", params={"ledger_transaction_id": txn["id"],
                                                               "show_deleted": "true"})).json()
    assert sorted(e["status"] for e in everything) == ["archived", "archived", "posted", "posted"]
    versions = (await api.get(f"/api/ledger_transactions/{txn['id']}/versions")).json()
    assert [(v["version"], v["status"], sorted(e["amount"] for e in v["ledger_entries"])) for v in versions] == [
        (1, "pending", [300, 300]), (2, "pending", [500, 500]), (3, "pending", [500, 500]),
        (4, "posted", [500, 500])]


async def test_effective_at_alone_writes_the_same_entries_at_the_new_time(api, books):
    ledger, cash, rev = books
    txn = await _pending(api, books, 70, effective_at="2026-03-05T12:00:00Z",
                         metadata={"k": "v"})
    r = await api.patch(f"/api/ledger_transactions/{txn['id']}", {"effective_at": "2026-03-01T08:00:00Z"})
    assert r.status_code == 200, r.text
    moved = r.json()
    assert moved["effective_at"] == "2026-03-01T08:00:00Z" and moved["effective_date"] == "2026-03-01"
    assert {e["effective_at"] for e in moved["ledger_entries"]} == {"2026-03-01T08:00:00Z"}
    assert sorted((e["ledger_account_id"], e["amount"]) for e in moved["ledger_entries"]) == sorted(
        (e["ledger_account_id"], e["amount"]) for e in txn["ledger_entries"])

    async def pending_at(upper: str) -> int:
        b = await api.balances(rev["id"], **{"balances[effective_at_upper_bound]": upper})
        return b["pending_balance"]["amount"]

    assert await pending_at("2026-03-02T00:00:00Z") == 70  # effective before the old time now
    assert await pending_at("2026-03-01T00:00:00Z") == 0
    assert await pending_at("2026-03-06T00:00:00Z") == 70  # and counted once
    same = await api.patch(f"/api/ledger_transactions/{txn['id']}", {"effective_at": "2026-03-01T08:00:00Z"})
    assert same.status_code == 200 and same.json()["version"] == moved["version"]  # nothing changes, nothing written


async def test_only_a_pending_transaction_changes_and_a_refused_change_writes_nothing(api, books):
    ledger, cash, rev = books
    posted = (await api.transfer(ledger["id"], cash["id"], rev["id"], 40)).json()
    for body in ({"ledger_entries": _entries(cash["id"], rev["id"], 41)}, {"effective_at": "2026-01-01T00:00:00Z"}):
        r = await api.patch(f"/api/ledger_transactions/{posted['id']}", body)
        assert r.status_code == 422 and r.json()["code"] == "invalid_status_transition", r.text
    pending = await _pending(api, books, 60)
    refusals = [
        ([{"ledger_account_id": cash["id"], "direction": "debit", "amount": 60},
          {"ledger_account_id": rev["id"], "direction": "credit", "amount": 59}], 422),  # unbalanced
        (_entries(cash["id"], "00000000-0000-4000-8000-000000000000", 60), 422),  # no such account
        ([], 400),
        ([{**e, "effective_at": "2026-01-01T00:00:00Z"} for e in _entries(cash["id"], rev["id"], 60)][:1]
         + _entries(cash["id"], rev["id"], 60)[1:], 400),  # entries effective at two times
    ]
    for entries, status in refusals:
        r = await api.patch(f"/api/ledger_transactions/{pending['id']}",
                            {"ledger_entries": entries, "effective_at": "2026-01-02T00:00:00Z"} if status == 400
                            and entries else {"ledger_entries": entries})
        assert r.status_code == status, (entries, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    now = (await api.get(f"/api/ledger_transactions/{pending['id']}")).json()
    assert now["version"] == 1 and [e["id"] for e in now["ledger_entries"]] == [
        e["id"] for e in pending["ledger_entries"]]
    assert await _amounts(api, rev["id"]) == (100, 40)


async def test_a_hold_grows_against_the_available_balance_without_counting_itself_twice(api, books):
    """A card's authorization raised (incremental authorization): the old hold is released before the new one's
    balance lock is checked, in one database transaction; a raise past the balance is refused, the hold kept."""
    ledger, cash, _ = books
    wallet = await api.account(ledger["id"], "credit")
    merchant = await api.account(ledger["id"], "credit")
    await api.transfer(ledger["id"], cash["id"], wallet["id"], 1000)
    lock = {"available_balance_amount": {"gte": 0}}
    r = await api.post("/api/ledger_transactions", {"status": "pending", "ledger_entries": [
        {"ledger_account_id": wallet["id"], "direction": "debit", "amount": 900, **lock},
        {"ledger_account_id": merchant["id"], "direction": "credit", "amount": 900}]})
    assert r.status_code == 201, r.text
    hold = r.json()
    raised = [{"ledger_account_id": wallet["id"], "direction": "debit", "amount": 950, **lock},
              {"ledger_account_id": merchant["id"], "direction": "credit", "amount": 950}]
    await _replace(api, hold["id"], raised)  # 1,000 - 950 >= 0: the 900 is no longer held
    assert (await api.balances(wallet["id"]))["available_balance"]["amount"] == 50
    too_much = [{**raised[0], "amount": 1001}, {**raised[1], "amount": 1001}]
    r = await api.patch(f"/api/ledger_transactions/{hold['id']}", {"ledger_entries": too_much})
    assert r.status_code == 422 and r.json()["code"] == "balance_lock_failed", r.text
    assert (await api.balances(wallet["id"]))["available_balance"]["amount"] == 50
    version = (await api.get(f"/api/ledger_accounts/{wallet['id']}")).json()["lock_version"]
    stale = [{**raised[0], "amount": 10, "lock_version": version - 1}, {**raised[1], "amount": 10}]
    r = await api.patch(f"/api/ledger_transactions/{hold['id']}", {"ledger_entries": stale})
    assert r.status_code == 422 and r.json()["code"] == "lock_version_mismatch", r.text
    fresh = [{**raised[0], "amount": 10, "lock_version": version}, {**raised[1], "amount": 10}]
    await _replace(api, hold["id"], fresh)  # the account's version before the change
    assert (await api.balances(wallet["id"]))["available_balance"]["amount"] == 990


async def test_a_hold_at_the_top_of_the_64_bit_range_moves_and_is_replaced_but_never_past_it(api, books):
    """The 64-bit headroom of a change is what the accounts hold once it is written: the old entries released, the
    new ones added. A hold of 2^63 - 1 moves in time and is replaced by another of the same size; one unit more
    on top of it is refused (balance_overflow), the hold kept."""
    ledger, _, _ = books
    card = await api.account(ledger["id"], "debit")
    merchant = await api.account(ledger["id"], "credit")
    top = 2**63 - 1
    r = await api.post("/api/ledger_transactions", {"status": "pending", "ledger_entries": _entries(
        card["id"], merchant["id"], top)})
    assert r.status_code == 201, r.text
    hold = r.json()
    r = await api.patch(f"/api/ledger_transactions/{hold['id']}", {"effective_at": "2026-06-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    await _replace(api, hold["id"], _entries(card["id"], merchant["id"], top))
    extra = await api.account(ledger["id"], "credit")
    r = await api.patch(f"/api/ledger_transactions/{hold['id']}", {"ledger_entries": [
        *_entries(card["id"], merchant["id"], top), *_entries(card["id"], extra["id"], 1)]})
    assert r.status_code == 422 and r.json()["code"] == "balance_overflow", r.text
    assert await _amounts(api, card["id"]) == (top, 0) and await _amounts(api, merchant["id"]) == (top, 0)
    assert await _amounts(api, extra["id"]) == (0, 0)
    versions = (await api.get(f"/api/ledger_transactions/{hold['id']}/versions")).json()
    assert [v["version"] for v in versions] == [1, 2, 3]


async def test_lists_by_account_and_amount_follow_the_entries_that_are_the_transactions(api, books):
    ledger, cash, rev = books
    other = await api.account(ledger["id"], "credit")
    txn = await _pending(api, books, 25)
    await _replace(api, txn["id"], _entries(cash["id"], other["id"], 26))

    async def ids(**params) -> list[str]:
        r = await api.get("/api/ledger_transactions", params=params)
        assert r.status_code == 200, r.text
        return [t["id"] for t in r.json()]

    assert await ids(ledger_account_id=rev["id"]) == []
    assert await ids(ledger_account_id=other["id"]) == [txn["id"]]
    assert await ids(**{"amount[eq]": "25"}) == [] and await ids(**{"amount[eq]": "26"}) == [txn["id"]]
    assert await _amounts(api, rev["id"]) == (0, 0) and await _amounts(api, other["id"]) == (26, 0)


async def test_a_settlement_never_takes_a_discarded_entry(api, books):
    """Once its transaction is posted, a discarded entry is still archived: neither gathered by a settlement nor
    taken by hand."""
    ledger, cash, rev = books
    contra = await api.account(ledger["id"], "debit")
    txn = await _pending(api, books, 30)
    replaced = await _replace(api, txn["id"], _entries(cash["id"], rev["id"], 35))
    assert (await api.patch(f"/api/ledger_transactions/{txn['id']}", {"status": "posted"})).status_code == 200
    discarded = next(e["id"] for e in txn["ledger_entries"] if e["ledger_account_id"] == rev["id"])
    live = next(e["id"] for e in replaced["ledger_entries"] if e["ledger_account_id"] == rev["id"])
    settle = {"settled_ledger_account_id": rev["id"], "contra_ledger_account_id": contra["id"]}
    draft = await api.post("/api/ledger_account_settlements", {**settle, "status": "drafting"})
    assert draft.status_code == 201, draft.text
    path = f"/api/ledger_account_settlements/{draft.json()['id']}/ledger_entries"
    refused = await api.patch(path, {"ledger_entry_ids": [discarded]})
    assert refused.status_code == 422 and refused.json()["code"] == "ledger_entry_not_settleable", refused.text
    assert (await api.patch(path, {"ledger_entry_ids": [live]})).json()["amount"] == 35
    assert (await api.request("DELETE", path, json={"ledger_entry_ids": [live]})).status_code == 200
    r = await api.post("/api/ledger_account_settlements", {**settle, "status": "posted"})
    assert r.status_code == 201, r.text
    assert r.json()["amount"] == 35


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_histories_of_replacements_keep_every_balance_the_sum_of_the_entries_that_count(api, seed):
    """Random sequences of postings, replacements (entries and effective times), posts, archives and refused changes:
    every account's balances, now and before a time, are the sums a model keeps of the entries that are their
    transaction's, and its listed entries are those entries (the invariants, after the test, recompute the rest)."""
    rng = random.Random(seed)
    ledger = await api.ledger()
    accounts = [(await api.account(ledger["id"], normal))["id"] for normal in ("debit", "credit", "credit", "debit")]
    normal = dict(zip(accounts, ("debit", "credit", "credit", "debit")))
    model: dict[str, dict] = {}  # transaction id -> status, effective day, [(account, direction, amount)]

    def legs() -> list[tuple[str, str, int]]:
        made = []
        for _ in range(rng.choice((1, 1, 2))):
            debit, credit = rng.sample(accounts, 2)
            amount = rng.randint(1, 999)
            made += [(debit, "debit", amount), (credit, "credit", amount)]
        return made

    def body(entries) -> list[dict]:
        return [{"ledger_account_id": a, "direction": d, "amount": x} for a, d, x in entries]

    def day(n: int) -> str:
        return f"2026-04-{n:02d}T12:00:00Z"

    for _ in range(30):
        pending = sorted(t for t, v in model.items() if v["status"] == "pending")
        done = sorted(t for t, v in model.items() if v["status"] != "pending")
        op = rng.choice(("create", "replace", "replace", "time", "post", "archive", "refused"))
        if op == "create" or (not pending and op != "refused") or (op == "refused" and not done):
            entries, status, when = legs(), rng.choice(("pending", "pending", "posted")), rng.randint(1, 28)
            r = await api.post("/api/ledger_transactions", {"status": status, "effective_at": day(when),
                                                            "ledger_entries": body(entries)})
            assert r.status_code == 201, r.text
            model[r.json()["id"]] = {"status": status, "day": when, "entries": entries}
        elif op == "replace":
            txn, entries = rng.choice(pending), legs()
            await _replace(api, txn, body(entries))
            model[txn]["entries"] = entries
        elif op == "time":
            txn, when = rng.choice(pending), rng.randint(1, 28)
            r = await api.patch(f"/api/ledger_transactions/{txn}", {"effective_at": day(when)})
            assert r.status_code == 200, r.text
            model[txn]["day"] = when
        elif op in ("post", "archive"):
            txn = rng.choice(pending)
            status = "posted" if op == "post" else "archived"
            r = await api.patch(f"/api/ledger_transactions/{txn}", {"status": status})
            assert r.status_code == 200, r.text
            model[txn]["status"] = status
        else:
            r = await api.patch(f"/api/ledger_transactions/{rng.choice(done)}", {"ledger_entries": body(legs())})
            assert r.status_code == 422 and r.json()["code"] == "invalid_status_transition", r.text

    def expected(account: str, before_day: int | None = None) -> tuple[int, int]:
        pending = posted = 0
        for v in model.values():
            if v["status"] == "archived" or (before_day is not None and v["day"] >= before_day):
                continue
            for a, d, x in v["entries"]:
                if a == account:
                    signed = x if d == normal[account] else -x
                    pending += signed
                    posted += signed if v["status"] == "posted" else 0
        return pending, posted

    for account in accounts:
        assert await _amounts(api, account) == expected(account), account
        bound = rng.randint(2, 28)
        b = await api.balances(account, **{"balances[effective_at_upper_bound]": day(bound)})
        assert (b["pending_balance"]["amount"], b["posted_balance"]["amount"]) == expected(account, bound), account
        listed = (await api.get("/api/ledger_entries", params={"ledger_account_id": account, "per_page": 100})).json()
        assert sorted((e["ledger_transaction_id"], e["direction"], e["amount"]) for e in listed) == sorted(
            (t, d, x) for t, v in model.items() for a, d, x in v["entries"] if a == account)


async def test_a_statement_keeps_the_entries_it_was_made_of_after_they_are_discarded(api, books):
    """A statement is the account as of its lock version: its balances count a hold's entries as they were then, so
    its entries are those, even once a replacement discarded them (shown archived); a later statement lists the new
    ones. The account's entries as of a lock version are the same."""
    ledger, cash, rev = books
    txn = await _pending(api, books, 300, effective_at="2026-02-01T00:00:00Z")
    bounds = {"ledger_account_id": rev["id"], "effective_at_lower_bound": "2026-01-01T00:00:00Z",
              "effective_at_upper_bound": "2026-03-01T00:00:00Z"}

    async def statement() -> tuple[dict, list[str]]:
        r = await api.post("/api/ledger_account_statements", bounds)
        assert r.status_code == 201, r.text
        s = r.json()
        listed = (await api.get("/api/ledger_entries", params={"ledger_account_statement_id": s["id"]})).json()
        return s, [e["id"] for e in listed]

    before, entries_before = await statement()
    old = [e["id"] for e in txn["ledger_entries"] if e["ledger_account_id"] == rev["id"]]
    assert entries_before == old and before["ending_balance"]["pending_balance"]["amount"] == 300
    changed = await _replace(api, txn["id"], _entries(cash["id"], rev["id"], 500))
    after, entries_after = await statement()
    assert entries_after == [e["id"] for e in changed["ledger_entries"] if e["ledger_account_id"] == rev["id"]]
    assert after["ending_balance"]["pending_balance"]["amount"] == 500
    listed = (await api.get("/api/ledger_entries", params={"ledger_account_statement_id": before["id"]})).json()
    assert [e["id"] for e in listed] == old, "a statement's entries changed after it was made"
    assert [(e["amount"], e["status"]) for e in listed] == [(300, "archived")]
    assert (await api.get("/api/ledger_entries", params={"ledger_account_statement_id": before["id"],
                                                         "status": "pending"})).json() == []
    for s, entries in ((before, old), (after, entries_after)):  # the account's entries as of each one's version
        listed = (await api.get("/api/ledger_entries", params={
            "ledger_account_id": rev["id"], "as_of_lock_version": str(s["ledger_account_lock_version"])})).json()
        assert [e["id"] for e in listed] == entries, s["ledger_account_lock_version"]


async def test_a_replaced_hold_is_partially_posted_from_its_new_entries(api, books):
    """A partial post of a replaced hold takes parts of its new entries (no larger than them) and archives those,
    never the discarded ones again: what stays is the posted part alone."""
    ledger, cash, rev = books
    txn = await _pending(api, books, 300)
    await _replace(api, txn["id"], _entries(cash["id"], rev["id"], 500))
    r = await api.post(f"/api/ledger_transactions/{txn['id']}/partial_post", {"posted_ledger_entries": [
        {"ledger_account_id": cash["id"], "direction": "debit", "amount": 501},
        {"ledger_account_id": rev["id"], "direction": "credit", "amount": 501}]})
    assert r.status_code == 422, r.text  # larger than the new entries
    r = await api.post(f"/api/ledger_transactions/{txn['id']}/partial_post", {"posted_ledger_entries": [
        {"ledger_account_id": cash["id"], "direction": "debit", "amount": 400},
        {"ledger_account_id": rev["id"], "direction": "credit", "amount": 400}]})
    assert r.status_code == 201, r.text  # 400 > 300: parts of the new entries, not the old
    assert await _amounts(api, rev["id"]) == (400, 400) and await _amounts(api, cash["id"]) == (400, 400)
    assert (await api.get(f"/api/ledger_transactions/{txn['id']}")).json()["status"] == "archived"


async def test_a_partial_posts_lock_version_is_the_accounts_before_the_hold_is_archived(api, books):
    """As a PATCH's: the version the client read, not one its own archive of the hold has just made."""
    ledger, cash, wallet = books  # wallet credit-normal
    assert (await api.transfer(ledger["id"], cash["id"], wallet["id"], 1000)).status_code == 201
    holds = [(await api.transfer(ledger["id"], wallet["id"], cash["id"], 100, status="pending")).json()["id"]
             for _ in range(2)]

    async def partial(hold: str, lock_version: int):
        return await api.post(f"/api/ledger_transactions/{hold}/partial_post", {"posted_ledger_entries": [
            {"ledger_account_id": wallet["id"], "direction": "debit", "amount": 60, "lock_version": lock_version},
            {"ledger_account_id": cash["id"], "direction": "credit", "amount": 60}]})

    version = (await api.get(f"/api/ledger_accounts/{wallet['id']}")).json()["lock_version"]
    never = await partial(holds[0], version + 1)  # a version the account never had
    assert never.status_code == 422 and never.json()["code"] == "lock_version_mismatch", never.text
    current = await partial(holds[0], version)
    assert current.status_code == 201, current.text
    version = (await api.get(f"/api/ledger_accounts/{wallet['id']}")).json()["lock_version"]
    assert (await partial(holds[1], version - 1)).json()["code"] == "lock_version_mismatch"  # stale
    assert (await partial(holds[1], version)).status_code == 201


async def test_a_stale_lock_version_is_refused_with_the_versions_the_client_sees(api, books):
    """A refused lock_version of a PATCH of entries or a partial post names the version the account is at (it is
    unchanged: nothing was written) and the one the request gave, not versions raised by the hold's own archives
    (found by tests/property/test_lock_version_model.py)."""
    ledger, cash, wallet = books  # wallet credit-normal
    assert (await api.transfer(ledger["id"], cash["id"], wallet["id"], 1000)).status_code == 201
    hold = (await api.transfer(ledger["id"], wallet["id"], cash["id"], 100, status="pending")).json()["id"]
    version = (await api.get(f"/api/ledger_accounts/{wallet['id']}")).json()["lock_version"]
    entries = [{"ledger_account_id": wallet["id"], "direction": "debit", "amount": 60, "lock_version": version + 1},
               {"ledger_account_id": cash["id"], "direction": "credit", "amount": 60}]
    for r in (await api.patch(f"/api/ledger_transactions/{hold}", {"ledger_entries": entries}),
              await api.post(f"/api/ledger_transactions/{hold}/partial_post", {"posted_ledger_entries": entries})):
        assert r.status_code == 422 and r.json()["code"] == "lock_version_mismatch", r.text
        assert r.json()["errors"] == {"ledger_account_id": wallet["id"], "expected": version + 1, "actual": version}
        assert r.json()["detail"] == f"ledger account {wallet['id']} is at lock_version {version}, not {version + 1}"
    assert (await api.get(f"/api/ledger_accounts/{wallet['id']}")).json()["lock_version"] == version
