"""Group commit of async postings (cell.service.posting_groups): concurrent async postings of a tenant go to the
database as fewer statements than postings, each answered as it would be alone; a group that fails is re-run one
posting per transaction (each gets its own usual answer or error); an unknown outcome is never re-run; a request
cancelled before its group is sent is left out, one cancelled after is not undone, and the others are not harmed."""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid

import asyncpg
import msgspec
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from cell.api.http import decode
from cell.ledger.commands import TransactionCreate
from cell.ledger.errors import (
    Conflict,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    OutcomeUnknown,
    PostingRejected,
)
from cell.service import transactions
from cell.service.context import AccountCache, CellContext
from cell.service.idempotency import idempotency_key
from cell.service.posting_groups import APPLYING_GROUP_MAX, PostingGroups
from cell.store import transactions as store_transactions
from cell.store.db import ACTING_TENANT, create_pool
from tests.integration.conftest import cell_settings

PATH = "/api/ledger_transactions"


class Rig:
    """A hybrid-mode cell context on the test database whose posting groups count their statements (and can hold
    them in flight, or lose their connection, as the test says)."""

    def __init__(self, ctx: CellContext, tenant_id: str) -> None:
        self.ctx, self.tenant_id = ctx, tenant_id
        self.statements: list[int] = []  # the statements the posting groups sent (a group or a posting alone)
        self.attempts = 0  # their runs on a connection: more than statements when CellContext.run retried (a deadlock)
        self.hold: asyncio.Event | None = None  # set: statements wait for it before they go
        self.before = None  # async fn(conn) run on the statement's connection before it

    async def run(self, fn):
        self.statements.append(1)
        if self.hold is not None:
            await self.hold.wait()
        before = self.before

        async def statement(conn):
            self.attempts += 1
            if before is not None:
                await before(conn)
            return await fn(conn)

        return await self.ctx.run(statement)

    def body(self, ledger_id: str, debit: str, credit: str, amount: int = 100, **extra) -> bytes:
        return json.dumps({"ledger_id": ledger_id, "status": "posted", "ledger_entries": [
            {"ledger_account_id": debit, "direction": "debit", "amount": amount},
            {"ledger_account_id": credit, "direction": "credit", "amount": amount}], **extra}).encode()

    async def post(self, raw: bytes, key: str | None = None):
        """POST /api/ledger_transactions as the fast path serves it, in this rig's context: the answer's bytes."""
        acting = ACTING_TENANT.set(self.tenant_id)
        try:
            idem = idempotency_key(key, "POST", PATH, raw, 255)
            view = await transactions.create_transaction(self.ctx, self.tenant_id, decode(raw, TransactionCreate),
                                                         idem)
            return msgspec.json.encode(view)
        finally:
            ACTING_TENANT.reset(acting)

    async def get(self, txn_id: str) -> bytes:
        acting = ACTING_TENANT.set(self.tenant_id)
        try:
            return msgspec.json.encode(await transactions.get_transaction(self.ctx, self.tenant_id,
                                                                          uuid.UUID(txn_id)))
        finally:
            ACTING_TENANT.reset(acting)


async def _rig(api, database_url: str) -> Rig:
    pool = await create_pool(database_url, min_size=1, max_size=8, role="ledger_app")
    ctx = CellContext(settings=cell_settings(database_url, posting_mode="hybrid"), pool=pool, cache=AccountCache(1000))
    r = Rig(ctx, api.tenant_id)
    ctx.posting_groups = PostingGroups(r.run, ctx.settings.posting_group_max)
    return r


@pytest_asyncio.fixture
async def rig(api, cell_database_url):
    r = await _rig(api, cell_database_url)
    try:
        yield r
    finally:
        await r.ctx.pool.close()


async def _cards(api, rig: Rig, n: int):
    """A ledger, n card accounts and a settlement account; the cell's caches warm (one posting alone)."""
    ledger = await api.ledger()
    settlement = await api.account(ledger["id"], "credit")
    cards = [await api.account(ledger["id"], "debit") for _ in range(n)]
    await rig.post(rig.body(ledger["id"], cards[0]["id"], settlement["id"]))
    acting = ACTING_TENANT.set(rig.tenant_id)
    try:  # every account's facts cached: the postings below reach their group in one turn of the loop
        await rig.ctx.cache.accounts(rig.ctx.pool, rig.tenant_id, [card["id"] for card in cards])
    finally:
        ACTING_TENANT.reset(acting)
    rig.statements.clear()
    return ledger["id"], [c["id"] for c in cards], settlement["id"]


async def _posted_count(admin_conn, tenant_id: str) -> int:
    return await admin_conn.fetchval("SELECT count(*) FROM ledger_transactions WHERE tenant_id = $1", tenant_id)


async def test_postings_together_go_in_fewer_statements_each_answered_as_alone(api, rig):
    ledger_id, cards, settlement = await _cards(api, rig, 10)
    answers = await asyncio.gather(*(rig.post(rig.body(ledger_id, card, settlement, 100 + i), key=f"k-{i}" if i % 2
                                              else None) for i, card in enumerate(cards)))
    assert len(rig.statements) == 1  # ready in one turn of the loop: one group
    ids = set()
    for i, raw in enumerate(answers):
        answer = json.loads(raw)
        assert answer["ledger_entries"][0]["amount"] == 100 + i and answer["status"] == "posted"
        assert raw == await rig.get(answer["id"])  # the answer is the transaction as GET renders it
        ids.add(answer["id"])
    assert len(ids) == len(cards)
    # The keyed ones replay their first answer, byte for byte.
    replays = await asyncio.gather(*(rig.post(rig.body(ledger_id, card, settlement, 100 + i), key=f"k-{i}")
                                     for i, card in enumerate(cards) if i % 2))
    assert replays == [raw for i, raw in enumerate(answers) if i % 2]


async def test_a_failing_posting_gets_its_error_and_the_others_succeed(api, rig, admin_conn):
    ledger_id, cards, settlement = await _cards(api, rig, 6)
    await rig.post(rig.body(ledger_id, cards[0], settlement, external_id="taken"))
    before = await _posted_count(admin_conn, api.tenant_id)
    rig.statements.clear()
    bodies = [rig.body(ledger_id, card, settlement, 7) for card in cards]
    bodies[2] = rig.body(ledger_id, cards[2], settlement, 7, external_id="taken")  # fails in ledger_post
    bodies[4] = rig.body(ledger_id, cards[4], str(uuid.uuid4()), 7)  # unknown account: refused before the database
    answers = await asyncio.gather(*(rig.post(b) for b in bodies), return_exceptions=True)
    assert isinstance(answers[2], Conflict) and answers[2].code == "external_id_taken"
    assert isinstance(answers[4], PostingRejected)
    ok = [raw for i, raw in enumerate(answers) if i not in (2, 4)]
    assert all(json.loads(raw)["status"] == "posted" for raw in ok)
    assert await _posted_count(admin_conn, api.tenant_id) == before + len(ok)
    assert len(rig.statements) == 1 + 5  # the group, then each of its five postings alone
    for raw in ok:
        assert raw == await rig.get(json.loads(raw)["id"])


async def test_a_key_in_flight_elsewhere_fails_only_its_posting(api, rig, cell_database_url):
    """LG004 in the group: nothing committed, each re-run alone: that one 409, the others posted."""
    ledger_id, cards, settlement = await _cards(api, rig, 4)
    holder = await asyncpg.connect(cell_database_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock(hashtextextended('idem:' || $1 || ':' || $2, 0))",
                                 api.tenant_id, "busy")
            answers = await asyncio.gather(*(rig.post(rig.body(ledger_id, card, settlement), key="busy" if i == 1
                                                      else None) for i, card in enumerate(cards)),
                                           return_exceptions=True)
    finally:
        await holder.close()
    assert isinstance(answers[1], IdempotencyInFlight)
    assert all(json.loads(a)["status"] == "posted" for i, a in enumerate(answers) if i != 1)


async def test_one_key_twice_in_a_group_is_as_one_after_the_other(api, rig, admin_conn):
    ledger_id, cards, settlement = await _cards(api, rig, 3)
    same = rig.body(ledger_id, cards[0], settlement, 5)
    first, again, other = await asyncio.gather(rig.post(same, key="twice"), rig.post(same, key="twice"),
                                               rig.post(rig.body(ledger_id, cards[1], settlement, 6)))
    assert len(rig.statements) == 1
    assert again == first  # the replay of the first answer, byte for byte
    assert json.loads(other)["ledger_entries"][0]["amount"] == 6
    rig.statements.clear()
    answers = await asyncio.gather(rig.post(rig.body(ledger_id, cards[2], settlement, 9), key="reused"),
                                   rig.post(rig.body(ledger_id, cards[2], settlement, 10), key="reused"),
                                   return_exceptions=True)
    assert json.loads(answers[0])["ledger_entries"][0]["amount"] == 9
    assert isinstance(answers[1], IdempotencyKeyReused)
    assert await admin_conn.fetchval("SELECT count(*) FROM ledger_entries WHERE tenant_id = $1 AND amount = 10",
                                     api.tenant_id) == 0


async def test_cancelled_requests_leave_the_others_unharmed(api, rig, admin_conn):
    ledger_id, cards, settlement = await _cards(api, rig, 4)
    before = await _posted_count(admin_conn, api.tenant_id)

    # Cancelled before the group was sent: the first (who sends it) and a joined one. Neither is written; the
    # others post on their own / in the group without the cancelled one.
    tasks = [asyncio.create_task(rig.post(rig.body(ledger_id, card, settlement))) for card in cards]
    await asyncio.sleep(0)  # each began: the first waits for the others to join, they joined
    tasks[0].cancel()
    tasks[2].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[0], asyncio.CancelledError) and isinstance(done[2], asyncio.CancelledError)
    assert all(json.loads(done[i])["status"] == "posted" for i in (1, 3))
    assert await _posted_count(admin_conn, api.tenant_id) == before + 2

    # Cancelled once its group was sent: the statement runs to its end; every other request gets its answer.
    rig.statements.clear()
    rig.hold = asyncio.Event()
    tasks = [asyncio.create_task(rig.post(rig.body(ledger_id, card, settlement))) for card in cards]
    while not rig.statements:
        await asyncio.sleep(0)
    tasks[0].cancel()  # the request whose turn sends the group
    tasks[1].cancel()
    await asyncio.sleep(0)
    rig.hold.set()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[0], asyncio.CancelledError) and isinstance(done[1], asyncio.CancelledError)
    assert all(json.loads(done[i])["status"] == "posted" for i in (2, 3))
    assert len(rig.statements) == 1
    # The cancelled requests' postings were sent: they stand, as a posting alone whose statement reached the database.
    await _until(lambda: _posted_count(admin_conn, api.tenant_id), before + 2 + 4)
    group = rig.ctx.posting_groups
    assert not group._in_flight and not group._landing and not group._forming


async def test_an_unknown_outcome_is_never_run_again(api, rig, admin_conn):
    """The connection lost while the group's statement ran: every posting of the group gets OutcomeUnknown (503),
    none is run again on its own."""
    ledger_id, cards, settlement = await _cards(api, rig, 4)
    before = await _posted_count(admin_conn, api.tenant_id)

    async def lose_connection(conn):
        rig.before = None
        await admin_conn.execute("SELECT pg_terminate_backend($1, 10000)", conn.get_server_pid())

    rig.before = lose_connection
    answers = await asyncio.gather(*(rig.post(rig.body(ledger_id, card, settlement)) for card in cards),
                                   return_exceptions=True)
    assert [type(a) for a in answers] == [OutcomeUnknown] * len(cards), [repr(a) for a in answers]
    assert len(rig.statements) == 1
    assert await _posted_count(admin_conn, api.tenant_id) == before


async def test_the_group_size_is_capped_and_one_turns_it_off(api, rig, cell_database_url):
    ledger_id, cards, settlement = await _cards(api, rig, 10)
    for size_max, statements_min in ((4, 3), (1, 10)):
        rig.ctx.posting_groups = PostingGroups(rig.run, size_max)
        rig.statements.clear()
        answers = await asyncio.gather(*(rig.post(rig.body(ledger_id, card, settlement)) for card in cards))
        assert len(rig.statements) >= statements_min
        assert len({json.loads(a)["id"] for a in answers}) == len(cards)


async def _until(probe, expected, deadline_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while (value := await probe()) != expected:
        assert loop.time() < end, f"{value} != {expected}"
        await asyncio.sleep(0.01)


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_the_group_sizes_and_splits_are_in_the_metrics(api, rig):
    ledger_id, cards, settlement = await _cards(api, rig, 6)
    groups, postings = _sample("ledger_posting_group_size_count"), _sample("ledger_posting_group_size_sum")
    small = _sample('ledger_posting_group_size_bucket{le="4.0"}')
    splits = _sample("ledger_posting_groups_split_total")
    await asyncio.gather(*(rig.post(rig.body(ledger_id, card, settlement)) for card in cards))
    assert _sample("ledger_posting_group_size_count") == groups + 1  # one group statement, of six postings
    assert _sample("ledger_posting_group_size_sum") == postings + 6
    assert _sample('ledger_posting_group_size_bucket{le="4.0"}') == small
    assert _sample("ledger_posting_groups_split_total") == splits
    await rig.post(rig.body(ledger_id, cards[0], settlement, external_id="once"))
    bodies = [rig.body(ledger_id, card, settlement, external_id="once" if i == 1 else None)
              for i, card in enumerate(cards[:3])]
    await asyncio.gather(*(rig.post(b) for b in bodies), return_exceptions=True)
    assert _sample("ledger_posting_groups_split_total") == splits + 1  # failed in ledger_post: re-run one by one
    assert _sample("ledger_posting_group_size_count") == groups + 2


# Postings that apply accounts now (a balance lock, resulting balances): grouped with each other, in account order.

def _debit(ledger_id: str, wallet: str, cash: str, amount: int) -> bytes:
    """A balance-locked debit of a wallet (applied now; its answer with the wallet's resulting balances), the cash
    side async: a card authorization."""
    return json.dumps({"ledger_id": ledger_id, "status": "posted", "ledger_entries": [
                           {"ledger_account_id": wallet, "direction": "debit", "amount": amount,
                            "available_balance_amount": {"gte": 0}, "show_resulting_ledger_account_balances": True},
                           {"ledger_account_id": cash, "direction": "credit", "amount": amount}]}).encode()


def _resulting(raw: bytes, account_id: str) -> int:
    entry = next(e for e in json.loads(raw)["ledger_entries"] if e["ledger_account_id"] == account_id)
    return entry["resulting_ledger_account_balances"]["available_balance"]["amount"]


async def _wallets(api, rig: Rig, n: int, funding: int):
    """A ledger, a cash account and n wallets funded with `funding` each; the cell's caches warm."""
    ledger = (await api.ledger())["id"]
    cash = (await api.account(ledger, "debit"))["id"]
    wallets = [(await api.account(ledger, "credit"))["id"] for _ in range(n)]
    for wallet in wallets:
        await rig.post(rig.body(ledger, cash, wallet, funding))
    acting = ACTING_TENANT.set(rig.tenant_id)
    try:
        await rig.ctx.cache.accounts(rig.ctx.pool, rig.tenant_id, [cash, *wallets])
    finally:
        ACTING_TENANT.reset(acting)
    rig.statements.clear()
    return ledger, cash, wallets


async def test_balance_locked_postings_go_together_each_answered_as_alone(api, rig):
    ledger, cash, wallets = await _wallets(api, rig, 6, 100)
    shuffled = wallets[3:] + wallets[:3]  # arriving out of account order: sent in it
    answers = await asyncio.gather(*(rig.post(_debit(ledger, wallet, cash, 10 + i)) for i, wallet in
                                     enumerate(shuffled)))
    assert len(rig.statements) == 1  # one group, one commit
    for i, (wallet, raw) in enumerate(zip(shuffled, answers, strict=True)):
        assert json.loads(raw)["status"] == "posted"
        assert _resulting(raw, wallet) == 100 - (10 + i)
        assert (await api.balances(wallet))["available_balance"]["amount"] == 100 - (10 + i)


async def test_a_violated_balance_lock_or_lock_version_fails_only_its_posting_in_the_group(api, rig, admin_conn):
    ledger, cash, wallets = await _wallets(api, rig, 5, 100)
    before = await _posted_count(admin_conn, api.tenant_id)
    splits = _sample("ledger_posting_groups_split_total")
    stale = json.loads(_debit(ledger, wallets[3], cash, 30))
    stale["ledger_entries"][0]["lock_version"] = 99  # LG002
    bodies = [_debit(ledger, wallet, cash, 500 if i == 1 else 30) for i, wallet in enumerate(wallets)]
    bodies[3] = json.dumps(stale).encode()
    locked = [rig.post(body) for body in bodies]
    unlocked = [rig.post(rig.body(ledger, cash, wallet, 5)) for wallet in wallets[:3]]  # async: a group of their own
    answers = await asyncio.gather(*locked, *unlocked, return_exceptions=True)
    assert isinstance(answers[1], PostingRejected) and answers[1].code == "balance_lock_failed", answers[1]
    assert answers[1].extra["ledger_account_id"] == wallets[1]
    assert isinstance(answers[3], PostingRejected) and answers[3].code == "lock_version_mismatch", answers[3]
    posted = [raw for i, raw in enumerate(answers) if i not in (1, 3)]
    assert all(json.loads(raw)["status"] == "posted" for raw in posted)
    assert await _posted_count(admin_conn, api.tenant_id) == before + len(posted)
    # The async group; the locking group, failed by its refusals (nothing committed); the same again, each posting in
    # a subtransaction: the refused ones undone alone. Nothing re-run one posting per transaction.
    assert len(rig.statements) == 3
    assert _sample("ledger_posting_groups_split_total") == splits
    for i in (0, 2, 4):
        assert _resulting(answers[i], wallets[i]) in (70, 75)  # before or after its async credit of 5 was applied
    assert await admin_conn.fetchval("SELECT count(*) FROM ledger_entries WHERE tenant_id = $1 AND amount = 500",
                                     api.tenant_id) == 0  # the refused postings were written nowhere
    assert await admin_conn.fetchval("SELECT count(*) FROM ledger_entries WHERE ledger_account_id = $1",
                                     uuid.UUID(wallets[3])) == 1  # its funding, not the refused debit
    # For a while after, the tenant's groups with balance locks go isolated at once: one statement.
    rig.statements.clear()
    again = await asyncio.gather(*(rig.post(_debit(ledger, wallet, cash, 500 if i == 0 else 1))
                                   for i, wallet in enumerate(wallets)), return_exceptions=True)
    assert isinstance(again[0], PostingRejected) and again[0].code == "balance_lock_failed"
    assert all(json.loads(raw)["status"] == "posted" for raw in again[1:])
    assert len(rig.statements) == 1


async def test_postings_on_one_hot_account_share_its_lock_and_one_commit(api, rig):
    ledger, cash, (wallet,) = await _wallets(api, rig, 1, 1000)
    answers = await asyncio.gather(*(rig.post(_debit(ledger, wallet, cash, 10)) for _ in range(8)))
    assert len(rig.statements) == 1
    # Applied one after the other in the group's transaction: each saw the one before it.
    assert sorted(_resulting(raw, wallet) for raw in answers) == list(range(920, 1000, 10))
    assert (await api.balances(wallet))["available_balance"]["amount"] == 920
    overdraft = await asyncio.gather(*(rig.post(_debit(ledger, wallet, cash, 400)) for _ in range(3)),
                                     return_exceptions=True)
    assert sum(isinstance(a, PostingRejected) for a in overdraft) == 1  # 920 covers two of the three
    assert (await api.balances(wallet))["available_balance"]["amount"] == 120


async def test_a_group_with_balance_locks_stays_within_postgresqls_subtransaction_cache(api, rig):
    ledger, cash, wallets = await _wallets(api, rig, APPLYING_GROUP_MAX + 4, 100)
    rig.ctx.posting_groups = PostingGroups(rig.run, APPLYING_GROUP_MAX + 8)
    answers = await asyncio.gather(*(rig.post(_debit(ledger, wallet, cash, 1)) for wallet in wallets))
    assert all(_resulting(raw, wallet) == 99 for raw, wallet in zip(answers, wallets, strict=True))
    assert len(rig.statements) == 1 + 4  # a group of APPLYING_GROUP_MAX, the rest alone


async def test_postings_through_a_hot_account_that_sorts_last_go_together_locking_first(api, rig):
    """Each posting applies its wallet and the hot account (resulting balances asked for both); every wallet's id sorts
    before the hot account's, so in a group the wallets' rows would be locked after the hot one: the group locks all
    its rows first, in one statement, and still goes as one."""
    ledger = (await api.ledger())["id"]
    accounts = sorted([(await api.account(ledger, "credit"))["id"] for _ in range(7)])
    wallets, hot = accounts[:-1], accounts[-1]
    for wallet in wallets:
        await rig.post(rig.body(ledger, hot, wallet, 100))  # funding: the hot account pays each wallet 100
    acting = ACTING_TENANT.set(rig.tenant_id)
    try:
        await rig.ctx.cache.accounts(rig.ctx.pool, rig.tenant_id, accounts)
    finally:
        ACTING_TENANT.reset(acting)
    rig.statements.clear()

    def payment(wallet: str, amount: int) -> bytes:
        return json.dumps({"ledger_id": ledger, "status": "posted", "ledger_entries": [
            {"ledger_account_id": wallet, "direction": "debit", "amount": amount,
             "show_resulting_ledger_account_balances": True},
            {"ledger_account_id": hot, "direction": "credit", "amount": amount,
             "show_resulting_ledger_account_balances": True}]}).encode()

    answers = await asyncio.gather(*(rig.post(payment(wallet, 10)) for wallet in wallets))
    assert len(rig.statements) == 1
    assert [_resulting(raw, wallet) for raw, wallet in zip(answers, wallets, strict=True)] == [90] * len(wallets)
    # The hot account (credit-normal) went from -600 to -540, one payment after the other.
    assert sorted(_resulting(raw, hot) for raw in answers) == list(range(-590, -530, 10))


async def test_groups_of_two_processes_through_the_same_accounts_never_deadlock(api, rig, cell_database_url):
    """Two cell processes (two contexts, two pools) post transfers between the same few accounts, each applying both
    (resulting balances asked for both entries), all at once, in groups: every group takes its row locks in account
    order, so no group is ever retried (a deadlock is retried by CellContext.run) and every transfer is posted."""
    other = await _rig(api, cell_database_url)
    try:
        ledger = (await api.ledger())["id"]
        accounts = [(await api.account(ledger, "credit"))["id"] for _ in range(6)]
        for rg in (rig, other):
            acting = ACTING_TENANT.set(rg.tenant_id)
            try:
                await rg.ctx.cache.accounts(rg.ctx.pool, rg.tenant_id, accounts)
            finally:
                ACTING_TENANT.reset(acting)
        rng = random.Random(7)

        def transfer() -> bytes:
            debit, credit = rng.sample(accounts, 2)
            amount = rng.randint(1, 99)
            return json.dumps({"ledger_id": ledger, "status": "posted", "ledger_entries": [
                {"ledger_account_id": debit, "direction": "debit", "amount": amount,
                 "show_resulting_ledger_account_balances": True},
                {"ledger_account_id": credit, "direction": "credit", "amount": amount,
                 "show_resulting_ledger_account_balances": True}]}).encode()

        for _ in range(6):
            answers = await asyncio.gather(*(rg.post(transfer()) for _ in range(12) for rg in (rig, other)))
            assert all(json.loads(raw)["status"] == "posted" for raw in answers)
        for rg in (rig, other):
            assert rg.attempts == len(rg.statements), "a group was retried: a deadlock or a conflict"
            assert len(rg.statements) < 6 * 12  # they went in groups
        totals = [(await api.balances(a))["posted_balance"]["amount"] for a in accounts]
        assert sum(totals) == 0
    finally:
        await other.ctx.pool.close()


# A queued group is written set-wise (routines/post_queued_group.sql: one statement for the group), and what it writes
# is what one ledger_post call per posting writes: the same rows in every table a posting touches, the same answers;
# what the set-wise routine leaves to ledger_post (a replayed or repeated Idempotency-Key, a sync-only account, an
# entry past 2^40) is sent one ledger_post call a posting, in the group's one transaction, as before.
EFFECTIVE = "2025-03-01T12:00:00Z"
# Every row a posting writes, as JSON, by its transaction's id ($1: the transactions' ids, in posting order), as the
# posting wrote it: the columns that number rows in the order the database wrote them (seq, the writing transaction's
# id) and those written later (an effect's apply by the worker or the cell's sweeper, an event's position) left out.
ROWS = {
    "ledger_transactions": "SELECT to_jsonb(t) - 'seq' FROM ledger_transactions t, unnest($1::uuid[]) WITH ORDINALITY"
                           " u(id, n) WHERE t.id = u.id ORDER BY u.n",
    "ledger_entries": "SELECT to_jsonb(e) - 'seq' FROM ledger_entries e, unnest($1::uuid[]) WITH ORDINALITY u(id, n)"
                      " WHERE e.transaction_id = u.id ORDER BY u.n, e.seq",
    "ledger_transaction_versions": "SELECT to_jsonb(v) - 'seq' - 'hash' - 'audit_txid'"
                                   " || jsonb_build_object('hash_holds', v.hash = ledger_version_hash(v.prev_hash,"
                                   " v.snapshot))"
                                   " FROM ledger_transaction_versions v, unnest($1::uuid[]) WITH ORDINALITY u(id, n)"
                                   " WHERE v.transaction_id = u.id ORDER BY u.n",
    "balance_effects": "SELECT to_jsonb(f) - 'seq' - 'applied_at' - 'lock_version' - 'pending_debits'"
                       " - 'pending_credits' - 'posted_debits' - 'posted_credits' FROM balance_effects f"
                       " JOIN ledger_entries e ON e.id = f.entry_id, unnest($1::uuid[]) WITH ORDINALITY u(id, n)"
                       " WHERE e.transaction_id = u.id ORDER BY u.n, e.seq, f.kind",
    "events": "SELECT to_jsonb(v) - 'seq' - 'id' - 'txid' - 'position' - 'event_time_max'"
              " - 'event_time_floor' FROM events v,"
              " unnest($1::uuid[]) WITH ORDINALITY u(id, n)"
              " WHERE v.entity_id = u.id ORDER BY u.n, v.event_name",
    "idempotency_keys": "SELECT to_jsonb(k) - 'seq' - 'key' - 'response' || jsonb_build_object('response',"
                        " convert_from(k.response, 'UTF8')::jsonb) FROM idempotency_keys k,"
                        " unnest($1::uuid[]) WITH ORDINALITY u(id, n) WHERE k.resource_id = u.id ORDER BY u.n",
}
TIME = re.compile(r'"20(?!25)\d\d-\d\d-\d\dT[^"]*"')  # a write's own time (the postings' effective times are in 2025)


def _bodies(rig, ledger_id: str, cards: list[str], settlement: str, side: str) -> list[tuple[bytes, str | None]]:
    """Postings of every shape a queued group takes, and their Idempotency-Keys (`side` names keys and external ids)."""
    body = rig.body
    return [
        (body(ledger_id, cards[0], settlement, 101, effective_at=EFFECTIVE, description="plain"), None),
        (body(ledger_id, cards[1], settlement, 102, effective_at=EFFECTIVE, status="pending",
              metadata={"order": "o-1", "kind": "hold"}, external_id=f"{side}-ext-1"), f"{side}-key-1"),
        (json.dumps({"ledger_id": ledger_id, "status": "posted", "effective_at": "2025-03-02T00:00:00Z",
                     "ledgerable_type": "expected_payment", "ledgerable_id": f"{side}-lid",
                     "ledger_entries": [
                         {"ledger_account_id": cards[2], "direction": "debit", "amount": 40,
                          "metadata": {"leg": "a"}},
                         {"ledger_account_id": cards[3], "direction": "debit", "amount": 60},
                         {"ledger_account_id": settlement, "direction": "credit", "amount": 100,
                          "metadata": {"leg": "c"}}]}).encode(), f"{side}-key-2"),
        (body(ledger_id, cards[4], settlement, 104, effective_at=EFFECTIVE, status="pending"), None),
        (body(ledger_id, cards[5], settlement, 2 ** 40 - 1, effective_at=EFFECTIVE), f"{side}-key-3"),
    ]


async def _rows(admin_conn, txn_ids: list[str], tokens: dict[str, str]) -> dict[str, list[str]]:
    """Each table's rows of the transactions, as JSON with ids, keys and write times replaced by tokens."""
    found = {}
    for table, query in ROWS.items():
        rows = [json.dumps(json.loads(r[0]), sort_keys=True) for r in await admin_conn.fetch(query, txn_ids)]
        for real, token in tokens.items():
            rows = [r.replace(real, token) for r in rows]
        found[table] = [TIME.sub('"T"', r) for r in rows]
    return found


def _tokens(answers: list[dict], bodies: list[tuple[bytes, str | None]], side: str) -> dict[str, str]:
    tokens = {f"{side}-{name}": name for name in ("ext-1", "key-1", "key-2", "key-3", "lid")}
    for raw, key in bodies:  # the hash of the request each key came with (the bodies differ by their side's names)
        if key is not None:
            tokens[idempotency_key(key, "POST", PATH, raw, 255).request_hash.hex()] = f"hash-of-{key[2:]}"
    for i, answer in enumerate(answers):
        tokens[answer["id"]] = f"txn-{i}"
        tokens.update({entry["id"]: f"entry-{i}-{j}" for j, entry in enumerate(answer["ledger_entries"])})
    return tokens


async def test_a_queued_group_writes_what_ledger_post_writes_for_each_posting(api, rig, admin_conn):
    ledger_id, cards, settlement = await _cards(api, rig, 6)
    statements: list[str] = []
    rig.before = _log_queries(statements)
    bodies_a, bodies_g = (_bodies(rig, ledger_id, cards, settlement, side) for side in ("a", "g"))
    alone = [json.loads(await rig.post(raw, key)) for raw, key in bodies_a]
    grouped = [json.loads(raw) for raw in await asyncio.gather(*(
        rig.post(raw, key) for raw, key in bodies_g))]
    assert len(rig.statements) == len(alone) + 1  # every posting alone, then one group
    posts = [q.split("(")[0] for q in statements if "ledger_post" in q]  # alone: ledger_post; the group: set-wise
    assert sorted(posts) == ["SELECT ledger_post"] * len(alone) + ["SELECT ledger_post_queued_group"], posts

    tokens_a, tokens_g = _tokens(alone, bodies_a, "a"), _tokens(grouped, bodies_g, "g")
    expected = await _rows(admin_conn, [a["id"] for a in alone], tokens_a)
    written = await _rows(admin_conn, [g["id"] for g in grouped], tokens_g)
    for table in ROWS:
        assert written[table] == expected[table], table
    assert [len(expected[t]) for t in ROWS] == [5, 11, 5, 11, 5, 3]  # events on, three keys
    for a, g in zip(alone, grouped, strict=True):  # the answers, ids and times aside
        assert TIME.sub('"T"', _replaced(json.dumps(g, sort_keys=True), tokens_g)) == \
            TIME.sub('"T"', _replaced(json.dumps(a, sort_keys=True), tokens_a))


def _replaced(text: str, tokens: dict[str, str]) -> str:
    for real, token in tokens.items():
        text = text.replace(real, token)
    return text


def _log_queries(into: list[str]):
    """A rig.before hook: the statements run on the rig's connections, appended to `into` (one logger a backend)."""
    logged: set[int] = set()

    async def before(conn):
        if conn.get_server_pid() not in logged:
            logged.add(conn.get_server_pid())
            conn.add_query_logger(lambda query: into.append(query.query))
    return before


@pytest.mark.parametrize("left", ["sync_only_account", "entry_past_2_40"])
async def test_what_the_set_wise_routine_leaves_is_posted_one_call_a_posting_in_the_group(api, rig, admin_conn, left):
    ledger_id, cards, settlement = await _cards(api, rig, 4)
    sync_only = (await api.account(ledger_id, "debit", sync_only=True))["id"]
    await rig.post(rig.body(ledger_id, sync_only, settlement, 1))  # its facts cached: the group forms in one turn
    bodies = [rig.body(ledger_id, card, settlement, 10 + i) for i, card in enumerate(cards)]
    bodies.append(rig.body(ledger_id, sync_only, settlement, 14) if left == "sync_only_account"
                  else rig.body(ledger_id, cards[0], settlement, 2 ** 40 + 1))
    statements: list[str] = []
    rig.before = _log_queries(statements)
    rig.statements.clear()
    answers = [json.loads(raw) for raw in await asyncio.gather(*(rig.post(body) for body in bodies))]
    assert len(rig.statements) == 1  # one group, one transaction
    posts = [q.split("(")[0] for q in statements if "ledger_post" in q]
    # Declined, then one ledger_post call a posting (pipelined: one logged statement).
    assert posts == ["SELECT ledger_post_queued_group", "SELECT ledger_post"], posts
    assert [a["status"] for a in answers] == ["posted"] * 5
    # The sync-only account applied in its posting, as alone (its balance row holds what was posted to it, nothing
    # of it queued); every other account's effects queued, a large entry's too.
    balance = await admin_conn.fetchval("SELECT posted_debits FROM account_balances WHERE account_id = $1", sync_only)
    assert balance == (1 + 14 if left == "sync_only_account" else 1)
    assert await admin_conn.fetchval(
        "SELECT count(*) FROM balance_effects f JOIN ledger_entries e ON e.id = f.entry_id WHERE f.applied_at IS NULL"
        " AND e.transaction_id = ANY($1::uuid[])", [a["id"] for a in answers]) == \
        (2 * 5 - 1 if left == "sync_only_account" else 2 * 5)


async def test_a_group_naming_an_account_deleted_elsewhere_fails_only_that_posting(api, rig, admin_conn):
    """The rig remembers every card; one is deleted through another cell process (the API's): the set-wise routine
    declines the group, the group's ledger_post calls refuse that posting, and each is then run alone."""
    ledger_id, cards, settlement = await _cards(api, rig, 5)
    r = await api.request("DELETE", f"/api/ledger_accounts/{cards[2]}")
    assert r.status_code == 200, r.text
    statements: list[str] = []
    rig.before = _log_queries(statements)
    answers = await asyncio.gather(*(rig.post(rig.body(ledger_id, card, settlement, 10 + i))
                                     for i, card in enumerate(cards)), return_exceptions=True)
    assert isinstance(answers[2], PostingRejected) and answers[2].code == "ledger_account_not_found", answers[2]
    assert [json.loads(a)["status"] for i, a in enumerate(answers) if i != 2] == ["posted"] * 4
    assert [q.split("(")[0] for q in statements if "ledger_post" in q][:2] == [
        "SELECT ledger_post_queued_group", "SELECT ledger_post"]  # declined, then refused in the group
    assert len(rig.statements) == 1 + 5  # the group, then each of its postings alone
    assert await admin_conn.fetchval("SELECT count(*) FROM ledger_entries WHERE ledger_account_id = $1",
                                     uuid.UUID(cards[2])) == 0


async def test_a_bulk_requests_async_postings_are_written_set_wise_in_its_transaction(api, rig, admin_conn):
    """store.post_many (a bulk request's postings, in the request's one database transaction) writes async postings
    set-wise; one the routine declines (a sync-only account) goes one ledger_post call each, under a savepoint that
    leaves the request's transaction usable."""
    ledger_id, cards, settlement = await _cards(api, rig, 4)
    sync_only = (await api.account(ledger_id, "debit", sync_only=True))["id"]
    acting = ACTING_TENANT.set(rig.tenant_id)
    try:
        async def prepared(debits: list[str]) -> list[tuple]:
            made = [await transactions.prepare_create(rig.ctx, rig.tenant_id, decode(
                rig.body(ledger_id, debit, settlement, 7), TransactionCreate), None) for debit in debits]
            return [(posting, events) for posting, _, events in made]

        plain, declined = await prepared(cards[:3]), await prepared([cards[3], sync_only])
        statements: list[str] = []

        async def request(conn):  # as the bulk task's: the postings, then more, in one database transaction
            with conn.query_logger(lambda query: statements.append(query.query)):
                async with conn.transaction():
                    await store_transactions.post_many(conn, plain)
                    await store_transactions.post_many(conn, declined)
                    return await conn.fetchval("SELECT count(*) FROM ledger_transactions WHERE id = ANY($1::uuid[])",
                                               [p.state.id for p, _ in plain + declined])

        assert await rig.ctx.run(request) == 5
    finally:
        ACTING_TENANT.reset(acting)
    posts = [q.split("(")[0] for q in statements if "ledger_post" in q]
    assert posts == ["SELECT ledger_post_queued_group"] * 2 + ["SELECT ledger_post"], posts
    # The sync-only account applied in its posting, as alone; the other accounts' effects queued.
    assert await admin_conn.fetchval("SELECT posted_debits FROM account_balances WHERE account_id = $1",
                                     sync_only) == 7
    assert await admin_conn.fetchval(
        "SELECT count(*) FROM balance_effects f JOIN ledger_entries e ON e.id = f.entry_id WHERE f.applied_at IS NULL"
        " AND e.transaction_id = ANY($1::uuid[])", [p.state.id for p, _ in plain + declined]) == 2 * 5 - 1


async def test_postings_created_archived_in_an_async_group_have_no_effect(api, rig, admin_conn):
    """A group of async postings goes set-wise (ledger_post_queued_group, which queues every entry's effect); those
    created archived (`status: archived`: no balance effect at all) are ledger_post's, written archived."""
    ledger_id, cards, settlement = await _cards(api, rig, 3)
    before = {a: await api.balances(a) for a in [*cards, settlement]}
    answers = await asyncio.gather(*(rig.post(rig.body(ledger_id, card, settlement, 9, status="archived"))
                                     for card in cards))
    made = [json.loads(a) for a in answers]
    assert [(t["status"], t["archived_reason"]) for t in made] == [("archived", None)] * 3
    assert await admin_conn.fetchval(
        "SELECT count(*) FROM balance_effects f JOIN ledger_entries e ON e.id = f.entry_id"
        " WHERE e.transaction_id = ANY($1::uuid[])", [uuid.UUID(t["id"]) for t in made]) == 0
    assert {a: await api.balances(a) for a in [*cards, settlement]} == before
    for t in made:
        assert json.loads(await rig.get(t["id"]))["status"] == "archived"
