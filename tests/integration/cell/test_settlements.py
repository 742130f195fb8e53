"""/api/ledger_account_settlements: a settlement gathers the settled account's posted entries before its upper bound
that no settlement holds, and posts their net against the contra account through the posting service; drafting
settlements take entries by hand; the status lifecycle moves the transaction with it; an entry is settled once."""

from __future__ import annotations

import asyncio

import pytest
from litestar.testing import AsyncTestClient

from cell.api.app import create_app
from cell.store.verify import verify
from tests.integration.conftest import Api, cell_settings


def _at(day: str) -> str:
    return f"2024-{day}T12:00:00Z"


class Books:
    """A ledger with a credit-normal wallet (the settled account), a debit-normal cash account and a payout account
    (the contra account)."""

    def __init__(self, api, ledger: str, wallet: str, cash: str, payouts: str) -> None:
        self.api, self.ledger, self.wallet, self.cash, self.payouts = api, ledger, wallet, cash, payouts

    async def pay(self, amount: int, day: str, status: str = "posted", into_wallet: bool = True) -> dict:
        debit, credit = (self.cash, self.wallet) if into_wallet else (self.wallet, self.cash)
        r = await self.api.transfer(self.ledger, debit, credit, amount, status=status, effective_at=_at(day))
        assert r.status_code == 201, r.text
        return r.json()

    def leg(self, txn: dict) -> str:
        return next(e["id"] for e in txn["ledger_entries"] if e["ledger_account_id"] == self.wallet)

    async def settle(self, status: str | None = None, upper: str | None = "2024-02-01T00:00:00Z", **extra):
        body = {"settled_ledger_account_id": self.wallet, "contra_ledger_account_id": self.payouts, **extra}
        if status is not None:
            body["status"] = status
        if upper is not None:
            body["effective_at_upper_bound"] = upper
        return await self.api.post("/api/ledger_account_settlements", body)

    async def settled(self, **params) -> dict:
        r = await self.settle(**params)
        assert r.status_code == 201, r.text
        return r.json()

    async def entries_of(self, settlement: dict) -> list[str]:
        r = await self.api.get("/api/ledger_entries", params={"ledger_account_settlement_id": settlement["id"]})
        assert r.status_code == 200, r.text
        return sorted(e["id"] for e in r.json())


async def _books(api) -> Books:
    ledger = (await api.ledger())["id"]
    return Books(api, ledger, (await api.account(ledger, "credit"))["id"], (await api.account(ledger, "debit"))["id"],
                 (await api.account(ledger, "debit"))["id"])


@pytest.fixture
async def books(api) -> Books:
    return await _books(api)


@pytest.fixture
async def bounded_books(cell_database_url, new_tenant):
    """Books on a cell whose settlements hold at most 3 entries (settlement_entries_max)."""
    async with AsyncTestClient(create_app(cell_settings(cell_database_url, settlement_entries_max=3))) as client:
        yield await _books(await new_tenant(client))


async def test_a_settlement_posts_the_net_of_the_entries_it_gathers(books):
    api = books.api
    kept = [await books.pay(100, "01-05"), await books.pay(50, "01-10"), await books.pay(30, "01-12", into_wallet=False)]
    await books.pay(20, "01-15", status="pending")  # not posted: not settled
    await books.pay(40, "02-02")  # at or after the upper bound: not settled

    s = await books.settled(description="January payout", metadata={"run": "1"})
    assert (s["object"], s["status"], s["amount"], s["settlement_entry_direction"]) == (
        "ledger_account_settlement", "pending", 120, "debit")
    assert (s["currency"], s["currency_exponent"], s["ledger_id"]) == ("USD", 2, books.ledger)
    assert (s["description"], s["metadata"]) == ("January payout", {"run": "1"})
    assert s["effective_at_upper_bound"] == "2024-02-01T00:00:00Z"
    txn = (await api.get(f"/api/ledger_transactions/{s['ledger_transaction_id']}")).json()
    assert txn["status"] == "pending" and txn["effective_at"] == "2024-02-01T00:00:00Z"
    assert sorted((e["ledger_account_id"], e["direction"], e["amount"]) for e in txn["ledger_entries"]) == sorted(
        [(books.wallet, "debit", 120), (books.payouts, "credit", 120)])
    assert await books.entries_of(s) == sorted(books.leg(t) for t in kept)
    listed = await api.get("/api/ledger_transactions", params={"ledger_account_settlement_id": s["id"]})
    assert sorted(t["id"] for t in listed.json()) == sorted(t["id"] for t in kept)
    assert (await books.api.balances(books.wallet))["pending_balance"]["amount"] == 100 + 50 - 30 + 20 + 40 - 120

    posted = await api.patch(f"/api/ledger_account_settlements/{s['id']}", {"status": "posted"})
    assert posted.status_code == 200 and posted.json()["status"] == "posted"
    assert (await api.get(f"/api/ledger_transactions/{s['ledger_transaction_id']}")).json()["status"] == "posted"
    assert (await books.api.balances(books.wallet))["posted_balance"]["amount"] == 40
    got = await api.get(f"/api/ledger_account_settlements/{s['id']}")
    assert got.status_code == 200 and got.json() == posted.json()

    later = await books.settled(status="posted", upper=None)  # up to now: the February entry only
    assert (later["status"], later["amount"]) == ("posted", 40)
    assert (await books.api.balances(books.wallet))["posted_balance"]["amount"] == 0


@pytest.mark.parametrize("status", ["pending", "posted", "drafting"])
async def test_the_upper_bound_defaults_to_the_settlements_created_at(books, status):
    """Modern Treasury: effective_at_upper_bound "defaults to the created_at timestamp of the ledger account
    settlement"; its transaction is effective then."""
    await books.pay(100, "01-05")
    s = await books.settled(status=status, upper=None)
    assert s["effective_at_upper_bound"] == s["created_at"], s
    if status == "drafting":
        return
    txn = (await books.api.get(f"/api/ledger_transactions/{s['ledger_transaction_id']}")).json()
    assert txn["effective_at"] == s["created_at"]


async def test_an_entry_is_never_settled_twice_even_by_racing_settlements(books):
    for day in range(1, 21):
        await books.pay(day, f"01-{day:02d}")
    answers = await asyncio.gather(*(books.settle() for _ in range(4)))
    assert all(r.status_code == 201 for r in answers), [r.text for r in answers]
    settlements = [r.json() for r in answers]
    held = [await books.entries_of(s) for s in settlements]
    assert sum(len(h) for h in held) == len(set().union(*held)) == 20
    assert sum(s["amount"] for s in settlements) == sum(range(1, 21))
    assert (await books.settled())["amount"] == 0


async def test_drafts_racing_for_the_same_entries_one_gets_them(books):
    legs = [books.leg(await books.pay(day, f"01-{day:02d}")) for day in range(1, 9)]
    drafts = [await books.settled(status="drafting") for _ in range(2)]
    answers = await asyncio.gather(*(
        books.api.patch(f"/api/ledger_account_settlements/{d['id']}/ledger_entries",
                        {"ledger_entry_ids": legs if i == 0 else legs[::-1]}) for i, d in enumerate(drafts)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 422], [r.text for r in answers]
    loser = next(r for r in answers if r.status_code == 422)
    assert loser.json()["code"] == "ledger_entry_already_settled"
    assert sorted([await books.entries_of(d) for d in drafts], key=len) == [[], sorted(legs)]


async def test_verify_finds_a_settlement_that_disagrees_with_its_entries(books, admin_conn):
    await books.pay(10, "01-02")
    s = await books.settled()
    await admin_conn.execute("UPDATE ledger_account_settlements SET amount = 11 WHERE id = $1", s["id"])
    try:
        problems = await verify(admin_conn, books.api.tenant_id)
        assert any(s["id"] in p for p in problems), problems
    finally:
        await admin_conn.execute("UPDATE ledger_account_settlements SET amount = 10 WHERE id = $1", s["id"])


async def test_a_draft_takes_entries_by_hand_then_settles_them(books):
    api = books.api
    a, b, c = await books.pay(10, "01-02"), await books.pay(20, "01-03"), await books.pay(5, "01-04")
    pending = await books.pay(7, "01-05", status="pending")
    draft = await books.settled(status="drafting")
    assert (draft["status"], draft["amount"], draft["ledger_transaction_id"]) == ("drafting", None, None)
    path = f"/api/ledger_account_settlements/{draft['id']}/ledger_entries"

    r = await api.patch(path, {"ledger_entry_ids": [books.leg(a), books.leg(b), books.leg(c)]})
    assert r.status_code == 200, r.text
    assert (r.json()["amount"], r.json()["settlement_entry_direction"]) == (35, "debit")
    r = await api.request("DELETE", path, json={"ledger_entry_ids": [books.leg(c)]})
    assert r.status_code == 200 and r.json()["amount"] == 30
    assert await books.entries_of(draft) == sorted([books.leg(a), books.leg(b)])

    refused = await api.patch(path, {"ledger_entry_ids": [books.leg(pending)]})
    assert refused.status_code == 422 and refused.json()["code"] == "ledger_entry_not_settleable"
    other = await books.settled(status="drafting")
    taken = await api.patch(f"/api/ledger_account_settlements/{other['id']}/ledger_entries",
                            {"ledger_entry_ids": [books.leg(c), books.leg(a)]})
    assert taken.status_code == 422 and taken.json()["code"] == "ledger_entry_already_settled"
    assert taken.json()["errors"] == {"ledger_entry_ids": [books.leg(a)]}
    assert await books.entries_of(other) == []  # nothing of the refused request stayed

    done = await api.patch(f"/api/ledger_account_settlements/{draft['id']}", {"status": "posted"})
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["amount"]) == ("posted", 30)
    txn = (await api.get(f"/api/ledger_transactions/{done.json()['ledger_transaction_id']}")).json()
    assert txn["status"] == "posted"
    late = await api.patch(path, {"ledger_entry_ids": [books.leg(c)]})
    assert late.status_code == 422 and late.json()["code"] == "settlement_not_drafting"


async def test_archiving_releases_the_entries_and_the_lifecycle_is_enforced(books):
    api = books.api
    await books.pay(10, "01-02")
    first = await books.settled()
    archived = await api.patch(f"/api/ledger_account_settlements/{first['id']}", {"status": "archived"})
    assert archived.status_code == 200 and archived.json()["status"] == "archived"
    assert (await api.get(f"/api/ledger_transactions/{first['ledger_transaction_id']}")).json()["status"] == "archived"
    assert await books.entries_of(first) == []
    again = await books.settled(status="posted")
    assert again["amount"] == 10

    for settlement, status in ((again, "archived"), (again, "pending"), (archived.json(), "posted")):
        r = await api.patch(f"/api/ledger_account_settlements/{settlement['id']}", {"status": status})
        assert r.status_code == 422 and r.json()["code"] == "invalid_status_transition", r.text
    r = await api.patch(f"/api/ledger_account_settlements/{again['id']}", {"description": "paid", "metadata": {"k": "v"}})
    assert r.status_code == 200 and (r.json()["description"], r.json()["metadata"]) == ("paid", {"k": "v"})

    pending = await books.settled(upper=None)
    await books.pay(3, "01-03")
    pending = await books.settled(upper=None)
    direct = await api.patch(f"/api/ledger_transactions/{pending['ledger_transaction_id']}", {"status": "posted"})
    assert direct.status_code == 422 and direct.json()["code"] == "settlement_transaction"


async def test_a_net_against_the_normal_balance_needs_allow_either_direction(books):
    await books.pay(25, "01-02", into_wallet=False)
    refused = await books.settle()
    assert refused.status_code == 422 and refused.json()["code"] == "settlement_balance_negative"
    s = await books.settled(allow_either_direction=True, status="posted")
    assert (s["amount"], s["settlement_entry_direction"]) == (25, "credit")
    assert (await books.api.balances(books.wallet))["posted_balance"]["amount"] == 0


async def test_a_retried_create_answers_the_same_settlement(books):
    api = books.api
    await books.pay(10, "01-02")
    body = {"settled_ledger_account_id": books.wallet, "contra_ledger_account_id": books.payouts,
            "effective_at_upper_bound": "2024-02-01T00:00:00Z"}
    first = await api.post("/api/ledger_account_settlements", body, headers={"Idempotency-Key": "settle-1"})
    again = await api.post("/api/ledger_account_settlements", body, headers={"Idempotency-Key": "settle-1"})
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    listed = await api.get("/api/ledger_account_settlements", params={"settled_ledger_account_id": books.wallet})
    assert [s["id"] for s in listed.json()] == [first.json()["id"]]


async def test_a_create_retried_after_its_settled_account_was_deleted_replays_the_first_answer(books):
    """A draft names an account without entries, which may be deleted once the draft is archived: the create sent
    again under its Idempotency-Key is its first answer, byte for byte, not a 422 about the account it named."""
    api = books.api
    empty = (await api.account(books.ledger, "credit"))["id"]
    body = {"settled_ledger_account_id": empty, "contra_ledger_account_id": books.payouts, "status": "drafting"}
    first = await api.post("/api/ledger_account_settlements", body, headers={"Idempotency-Key": "settle-deleted"})
    assert first.status_code == 201, first.text
    archived = await api.patch(f"/api/ledger_account_settlements/{first.json()['id']}", {"status": "archived"})
    assert archived.status_code == 200, archived.text
    assert (await api.request("DELETE", f"/api/ledger_accounts/{empty}")).status_code == 200
    again = await api.post("/api/ledger_account_settlements", body, headers={"Idempotency-Key": "settle-deleted"})
    assert (again.status_code, again.content) == (201, first.content), again.text
    listed = await api.get("/api/ledger_account_settlements", params={"settled_ledger_account_id": empty})
    assert [s["id"] for s in listed.json()] == [first.json()["id"]]
    # Without the key it is a new request, refused: the account is not found.
    r = await api.post("/api/ledger_account_settlements", body)
    assert (r.status_code, r.json()["code"]) == (422, "ledger_account_not_found")


async def test_lists_filter_and_page(books):
    api = books.api
    made = []
    for day in range(1, 4):
        await books.pay(day, f"01-{day:02d}")
        made.append(await books.settled(upper=_at(f"01-{day:02d}").replace("12:00", "13:00"), metadata={"n": str(day)}))
    seen, cursor = [], None
    while True:
        r = await api.get("/api/ledger_account_settlements",
                          params={"per_page": 1, **({"after_cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        seen += [s["id"] for s in r.json()]
        cursor = r.headers.get("x-after-cursor")
        if not cursor:
            break
    assert seen == [s["id"] for s in made]

    async def ids(**params) -> list[str]:
        return [s["id"] for s in (await api.get("/api/ledger_account_settlements", params=params)).json()]

    assert await ids(**{"metadata[n]": "2"}) == [made[1]["id"]]
    assert await ids(ledger_transaction_id=made[2]["ledger_transaction_id"]) == [made[2]["id"]]
    assert await ids(**{"id[]": [made[2]["id"], made[0]["id"]]}) == [made[0]["id"], made[2]["id"]]
    assert await ids(settlement_entry_direction="credit") == []
    assert await ids(ledger_id=books.ledger, **{"created_at[gte]": made[1]["created_at"]}) == [m["id"] for m in made[1:]]
    bad = await api.get("/api/ledger_account_settlements", params={"status": "posted"})
    assert bad.status_code == 400 and bad.json()["code"] == "unknown_parameter"


async def test_refusals_are_problems_with_stable_codes(books, new_tenant):
    api = books.api
    same = await api.post("/api/ledger_account_settlements", {"settled_ledger_account_id": books.wallet,
                                                              "contra_ledger_account_id": books.wallet})
    assert same.status_code == 400 and same.json()["code"] == "same_ledger_account"
    euro = (await api.account(books.ledger, "debit", currency="EUR"))["id"]
    mixed = await api.post("/api/ledger_account_settlements", {"settled_ledger_account_id": books.wallet,
                                                               "contra_ledger_account_id": euro})
    assert mixed.status_code == 422 and mixed.json()["code"] == "currency_mismatch"
    skip = await books.settle(skip_settlement_ledger_transaction=True)
    assert skip.status_code == 400 and skip.json()["code"] == "unsupported_parameter"
    too_many = await api.patch(f"/api/ledger_account_settlements/{(await books.settled(status='drafting'))['id']}"
                               "/ledger_entries", {"ledger_entry_ids": [books.wallet] * 501})
    assert too_many.status_code == 400

    s = await books.settled()
    other = await new_tenant()
    assert (await other.get(f"/api/ledger_account_settlements/{s['id']}")).status_code == 404
    assert (await other.patch(f"/api/ledger_account_settlements/{s['id']}", {"status": "posted"})).status_code == 404
    foreign = await other.post("/api/ledger_account_settlements", {"settled_ledger_account_id": books.wallet,
                                                                   "contra_ledger_account_id": books.payouts})
    assert foreign.status_code == 422 and foreign.json()["code"] == "ledger_account_not_found"
    assert (await other.get("/api/ledger_account_settlements")).json() == []


async def test_a_settlement_gathers_at_most_its_bound_and_a_larger_one_is_refused_whole(bounded_books):
    """Gathering is bounded (settlement_entries_max, 3 here): 4 unsettled entries are refused with nothing claimed
    and nothing posted; an earlier upper bound that holds 3 settles them, and the 4th is settled next."""
    books = bounded_books
    api = books.api
    for day in ("01-02", "01-03", "01-04", "01-05"):
        await books.pay(100, day)
    refused = await books.settle(status="posted")
    assert refused.status_code == 422 and refused.json()["code"] == "settlement_too_large"
    assert (await api.get("/api/ledger_account_settlements")).json() == []
    assert (await api.balances(books.wallet))["posted_balance"]["amount"] == 400

    first = await books.settled(status="posted", upper="2024-01-05T00:00:00Z")
    assert first["amount"] == 300 and len(await books.entries_of(first)) == 3
    second = await books.settled(status="posted")
    assert second["amount"] == 100 and len(await books.entries_of(second)) == 1
    assert (await api.balances(books.wallet))["posted_balance"]["amount"] == 0


async def test_a_draft_holds_at_most_the_bound_whatever_is_attached_later(bounded_books):
    """Attaching is bounded as gathering is (settlement_entries_max, 3 here): past it the request is refused whole."""
    books = bounded_books
    api = books.api
    draft = await books.settled(status="drafting")  # a draft holds what is attached to it
    legs = [books.leg(await books.pay(10, day)) for day in ("01-02", "01-03", "01-04", "01-05")]
    path = f"/api/ledger_account_settlements/{draft['id']}/ledger_entries"
    refused = await api.patch(path, {"ledger_entry_ids": legs})
    assert refused.status_code == 422 and refused.json()["code"] == "settlement_too_large", refused.text
    assert await books.entries_of(draft) == []
    assert (await api.patch(path, {"ledger_entry_ids": legs[:3]})).status_code == 200
    refused = await api.patch(path, {"ledger_entry_ids": legs[3:]})  # one at a time, the same bound
    assert refused.status_code == 422 and refused.json()["code"] == "settlement_too_large", refused.text
    assert await books.entries_of(draft) == sorted(legs[:3])


async def test_attaching_held_entries_or_detaching_others_changes_nothing_and_writes_no_event(books, admin_conn):
    """As any change that changes nothing: entries a draft holds already attached again, or entries it does not hold
    detached, answer the draft as it is (updated_at kept) and write no event."""
    api = books.api
    a, b = books.leg(await books.pay(10, "01-02")), books.leg(await books.pay(20, "01-03"))
    draft = await books.settled(status="drafting")
    path = f"/api/ledger_account_settlements/{draft['id']}/ledger_entries"

    async def events() -> int:
        return await admin_conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1 AND entity_id = $2",
                                         api.tenant_id, draft["id"])

    held = await api.patch(path, {"ledger_entry_ids": [a]})
    assert held.status_code == 200 and held.json()["amount"] == 10, held.text
    written = await events()
    again = await api.patch(path, {"ledger_entry_ids": [a]})
    assert again.status_code == 200 and again.json() == held.json()
    other = await api.request("DELETE", path, json={"ledger_entry_ids": [b]})
    assert other.status_code == 200 and other.json() == held.json()
    assert await events() == written
    detached = await api.request("DELETE", path, json={"ledger_entry_ids": [a, b]})
    assert detached.status_code == 200 and detached.json()["amount"] == 0
    assert await events() == written + 1


async def test_an_account_a_draft_names_is_not_deleted_until_the_draft_ends(books):
    """A draft settles its account against its contra account when posted: either deleted under it would leave a
    draft that can only be archived (posting it refused: an account not found). Refused as a monitored account's
    delete is, 422 ledger_account_in_use, until the draft is archived (or settled, when they have entries)."""
    api = books.api
    entry = books.leg(await books.pay(100, "01-05"))
    spare = (await api.account(books.ledger, "debit"))["id"]  # no entry, no settlement: deleted as ever
    draft = await books.settled(status="drafting")
    held = await api.patch(f"/api/ledger_account_settlements/{draft['id']}/ledger_entries",
                           {"ledger_entry_ids": [entry]})
    assert held.status_code == 200 and held.json()["amount"] == 100, held.text
    r = await api.request("DELETE", f"/api/ledger_accounts/{books.payouts}")
    assert r.status_code == 422 and r.json()["code"] == "ledger_account_in_use", r.text
    assert (await api.get(f"/api/ledger_accounts/{books.payouts}")).status_code == 200
    assert (await api.request("DELETE", f"/api/ledger_accounts/{spare}")).status_code == 200
    posted = await api.patch(f"/api/ledger_account_settlements/{draft['id']}", {"status": "posted"})
    assert posted.status_code == 200 and posted.json()["ledger_transaction_id"], posted.text

    contra = (await api.account(books.ledger, "debit"))["id"]  # a draft holding nothing names it too
    other = await books.settle(status="drafting", contra_ledger_account_id=contra)
    assert other.status_code == 201, other.text
    r = await api.request("DELETE", f"/api/ledger_accounts/{contra}")
    assert r.status_code == 422 and r.json()["code"] == "ledger_account_in_use", r.text
    archived = await api.patch(f"/api/ledger_account_settlements/{other.json()['id']}", {"status": "archived"})
    assert archived.status_code == 200, archived.text
    assert (await api.request("DELETE", f"/api/ledger_accounts/{contra}")).status_code == 200


async def test_an_account_deleted_through_another_process_is_not_settled_from_its_cache(books, cell_database_url):
    """Another API process of the cell remembers the accounts it posted to; one deleted through this one is not
    found there either when a settlement names it (422 ledger_account_not_found), not a draft of an account gone."""
    api = books.api
    gone = (await api.account(books.ledger, "debit"))["id"]
    async with AsyncTestClient(create_app(cell_settings(cell_database_url))) as client:
        other = Api(client, api.tenant_id, api.api_key)
        assert (await other.get(f"/api/ledger_accounts/{gone}")).status_code == 200
        probe = await other.post("/api/ledger_account_settlements", {  # remembers both accounts
            "settled_ledger_account_id": books.wallet, "contra_ledger_account_id": gone, "status": "drafting"})
        assert probe.status_code == 201, probe.text
        archived = await other.patch(f"/api/ledger_account_settlements/{probe.json()['id']}", {"status": "archived"})
        assert archived.status_code == 200, archived.text
        assert (await api.request("DELETE", f"/api/ledger_accounts/{gone}")).status_code == 200
        r = await other.post("/api/ledger_account_settlements", {
            "settled_ledger_account_id": books.wallet, "contra_ledger_account_id": gone, "status": "drafting"})
        assert (r.status_code, r.json().get("code")) == (422, "ledger_account_not_found"), r.text
