"""The audit chain: sealed in commit order below the horizon, verified from the rows, and every tampering a
privileged user can do behind the triggers' back found (anchors catch a chain replaced whole)."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from cell.api.app import create_app
from cell.service.tenants import create_api_key, create_tenant
from cell.store import audit
from cell.store.verify import verify
from tests.integration.conftest import Api, cell_settings


@pytest.fixture(scope="module")
def audit_database_url(make_database):
    return make_database("audit_chain")


@pytest_asyncio.fixture(scope="module")
async def client(audit_database_url):
    async with AsyncTestClient(create_app(cell_settings(audit_database_url))) as c:
        yield c


@pytest_asyncio.fixture
async def owner(audit_database_url):
    conn = await asyncpg.connect(audit_database_url)
    yield conn
    await conn.close()


async def seal_all(conn: asyncpg.Connection, deadline_s: float = 30.0) -> None:
    """Seal until nothing below the current moment is left (a short transaction elsewhere in the cluster may
    hold the horizon back for a moment)."""
    deadline = time.monotonic() + deadline_s
    target = await conn.fetchval("SELECT pg_current_xact_id()::text::bigint")  # a transaction ended: this one
    while True:
        await audit.seal_until_caught_up(conn)
        horizon = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        if horizon > target and await audit.caught_up(conn):
            return
        assert time.monotonic() < deadline, "the sealer never caught up"
        await asyncio.sleep(0.02)


async def tenant_with_history(client, owner) -> tuple[Api, dict]:
    """A tenant with accounts (one renamed), posted and pending transactions (one posted later)."""
    tenant_id = f"t-{uuid.uuid4().hex[:12]}"
    await create_tenant(owner, tenant_id, "audit")
    _, secret = await create_api_key(owner, tenant_id)
    api = Api(client, tenant_id, secret)
    ledger = await api.ledger()
    cash = await api.account(ledger["id"], "debit")
    revenue = await api.account(ledger["id"], "credit")
    ids = []
    for amount in (100, 250, 75):
        r = await api.transfer(ledger["id"], cash["id"], revenue["id"], amount)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    pending = await api.transfer(ledger["id"], cash["id"], revenue["id"], 40, status="pending")
    assert pending.status_code == 201
    r = await api.patch(f"/api/ledger_transactions/{pending.json()['id']}", {"status": "posted"})
    assert r.status_code == 200, r.text
    r = await api.patch(f"/api/ledger_accounts/{revenue['id']}", {"name": "revenue (renamed)"})
    assert r.status_code == 200, r.text
    return api, {"cash": cash["id"], "revenue": revenue["id"], "transactions": ids, "pending": pending.json()["id"]}


async def findings(owner, tenant_id: str, anchors=()) -> list[str]:
    report = await audit.verify_chain(owner, tenant_id, anchors)
    return [f"{f.link}: {f.covers}: {f.problem}" for f in report.findings] + await verify(owner, tenant_id)


async def test_a_sealed_history_verifies_and_links_every_version_and_account_change(client, owner):
    api, made = await tenant_with_history(client, owner)
    await seal_all(owner)
    report = await audit.verify_chain(owner, api.tenant_id)
    assert report.findings == [] and report.unsealed == 0
    # 5 versions (4 transactions, one posted later) and 2 accounts (as they were when sealed: renamed)
    assert await link_kinds(owner, api.tenant_id) == {"version": 5, "account": 2}
    assert report.links == report.head_seq == 7
    assert await verify(owner, api.tenant_id) == []
    # an account changed after it was sealed is linked again; sealing again links nothing twice
    r = await api.patch(f"/api/ledger_accounts/{made['cash']}", {"metadata": {"k": "v"}})
    assert r.status_code == 200, r.text
    await seal_all(owner)
    await seal_all(owner)
    assert await link_kinds(owner, api.tenant_id) == {"version": 5, "account": 3}
    assert (await audit.verify_chain(owner, api.tenant_id)).findings == []


async def link_kinds(owner, tenant_id: str) -> dict[str, int]:
    rows = await owner.fetch("SELECT kind, count(*) FROM audit_links WHERE tenant_id = $1 GROUP BY kind", tenant_id)
    return {r["kind"]: r["count"] for r in rows}


async def test_an_idle_pass_writes_nothing_and_the_next_change_is_still_sealed(client, owner):
    """Idle, a pass finds nothing written behind the watermark and writes nothing (before, every pass moved the
    watermark: a write and a commit a second per cell). A change afterwards is sealed as ever."""
    api, made = await tenant_with_history(client, owner)
    await seal_all(owner)

    async def watermark_row():
        return tuple(await owner.fetchrow("SELECT done_txid::text, xmin::text FROM audit_sealer"))

    before = await watermark_row()
    assert await audit.seal(owner) == 0
    assert await watermark_row() == before
    assert await audit.caught_up(owner)  # what the worker's sealer asks first, in one statement
    r = await api.patch(f"/api/ledger_accounts/{made['cash']}", {"metadata": {"after": "idle"}})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 30
    while await audit.caught_up(owner):  # once no older transaction holds the horizon back
        assert time.monotonic() < deadline, "the change never showed as left to seal"
        await asyncio.sleep(0.02)
    linked = await owner.fetchval("SELECT count(*) FROM audit_links WHERE tenant_id = $1", api.tenant_id)
    await seal_all(owner)
    assert await owner.fetchval("SELECT count(*) FROM audit_links WHERE tenant_id = $1", api.tenant_id) == linked + 1
    assert (await audit.verify_chain(owner, api.tenant_id)).findings == []


async def test_a_running_writer_holds_sealing_back_and_comes_first_of_what_was_left(client, owner, audit_database_url):
    api, made = await tenant_with_history(client, owner)
    await seal_all(owner)
    writer = await asyncpg.connect(audit_database_url)
    try:
        async with writer.transaction():
            await writer.execute("UPDATE ledger_accounts SET name = 'early' WHERE id = $1", uuid.UUID(made["cash"]))
            await api.patch(f"/api/ledger_accounts/{made['revenue']}", {"name": "late"})
            await audit.seal_until_caught_up(owner)
            linked = await owner.fetchval("SELECT count(*) FROM audit_links WHERE tenant_id = $1", api.tenant_id)
            assert linked == 7  # the later, committed change waits behind the running one
        await seal_all(owner)
    finally:
        await writer.close()
    order = await owner.fetch("SELECT ref_id FROM audit_links WHERE tenant_id = $1 AND seal_seq > 7 "
                              "ORDER BY seal_seq", api.tenant_id)
    assert [str(r["ref_id"]) for r in order] == [made["cash"], made["revenue"]]
    assert (await audit.verify_chain(owner, api.tenant_id)).findings == []


async def as_privileged(owner, *statements: tuple) -> None:
    """Statements run by the owner with every trigger off (what only a privileged connection can do)."""
    async with owner.transaction():
        await owner.execute("SET LOCAL session_replication_role = replica")
        for sql, *args in statements:
            await owner.execute(sql, *args)


def _u(value: str) -> uuid.UUID:
    return uuid.UUID(value)


TAMPERING = {
    "entry amount updated": lambda m: [(
        "UPDATE ledger_entries SET amount = amount + 1 WHERE transaction_id = $1", _u(m["transactions"][0]))],
    "transaction deleted with its entries and versions": lambda m: [
        ("DELETE FROM ledger_entries WHERE transaction_id = $1", _u(m["transactions"][1])),
        ("DELETE FROM balance_effects WHERE entry_id NOT IN (SELECT id FROM ledger_entries)",),
        ("DELETE FROM ledger_transaction_versions WHERE transaction_id = $1", _u(m["transactions"][1])),
        ("DELETE FROM ledger_transactions WHERE id = $1", _u(m["transactions"][1]))],
    "entry inserted": lambda m: [(
        ("INSERT INTO ledger_entries (id, tenant_id, transaction_id, ledger_account_id, direction, amount, "
         "effective_at) SELECT gen_random_uuid(), tenant_id, transaction_id, ledger_account_id, direction, 5, "
         "effective_at FROM ledger_entries WHERE transaction_id = $1 LIMIT 1"), _u(m["transactions"][2]))],
    "balance cache edited": lambda m: [(
        "UPDATE account_balances SET posted_debits = posted_debits + 1000 WHERE account_id = $1", _u(m["cash"]))],
    "version snapshot altered": lambda m: [(
        ("UPDATE ledger_transaction_versions SET snapshot = jsonb_set(snapshot, '{description}', '\"edited\"') "
         "WHERE transaction_id = $1 AND version = 1"), _u(m["transactions"][0]))],
    "account edited": lambda m: [(
        "UPDATE ledger_accounts SET normal_balance = 'credit' WHERE id = $1", _u(m["cash"]))],
}


@pytest.mark.parametrize("tampering", list(TAMPERING))
async def test_tampering_behind_the_triggers_is_found(client, owner, tampering):
    api, made = await tenant_with_history(client, owner)
    await seal_all(owner)
    assert await findings(owner, api.tenant_id) == []
    await as_privileged(owner, *TAMPERING[tampering](made))
    await seal_all(owner)  # the sealer running after the fact hides nothing
    found = await findings(owner, api.tenant_id)
    assert found, tampering
    if tampering != "balance cache edited":  # caches are checked by recomputation, the rest by the chain too
        assert (await audit.verify_chain(owner, api.tenant_id)).findings, found


async def test_a_replacement_seals_its_entries_with_its_version_and_tampering_with_them_is_found(client, owner):
    """A pending transaction's entries replaced (0206): the version that wrote them seals them; an amount changed, or
    the discarded entries made the transaction's again, is found (by the chain, and by the balances' recomputation)."""
    api, made = await tenant_with_history(client, owner)
    ledger_id = (await api.get(f"/api/ledger_accounts/{made['cash']}")).json()["ledger_id"]
    hold = (await api.transfer(ledger_id, made["cash"], made["revenue"], 10, status="pending")).json()
    r = await api.patch(f"/api/ledger_transactions/{hold['id']}", {"ledger_entries": [
        {"ledger_account_id": made["cash"], "direction": "debit", "amount": 12},
        {"ledger_account_id": made["revenue"], "direction": "credit", "amount": 12}]})
    assert r.status_code == 200, r.text
    await seal_all(owner)
    assert await findings(owner, api.tenant_id) == []
    covers = f"transaction {hold['id']} version 2"
    await as_privileged(owner, ("UPDATE ledger_entries SET amount = amount + 1 WHERE transaction_id = $1 "
                                "AND version = 2", _u(hold["id"])))
    assert [f.covers for f in (await audit.verify_chain(owner, api.tenant_id)).findings] == [covers]
    await as_privileged(owner, ("UPDATE ledger_entries SET amount = amount - 1 WHERE transaction_id = $1 "
                                "AND version = 2", _u(hold["id"])),
                        ("UPDATE ledger_transactions SET entries_version = NULL WHERE id = $1", _u(hold["id"])))
    assert (await audit.verify_chain(owner, api.tenant_id)).findings == []
    assert await verify(owner, api.tenant_id)  # four entries counted: their balances no longer add up


async def test_the_first_broken_link_names_what_it_covers(client, owner):
    api, made = await tenant_with_history(client, owner)
    await seal_all(owner)
    await as_privileged(owner, *TAMPERING["entry amount updated"](made))
    report = await audit.verify_chain(owner, api.tenant_id)
    first = report.first_broken_link
    assert first is not None and first.covers == f"transaction {made['transactions'][0]} version 1"
    assert "entries" in first.problem


async def anchor_of_head(owner, tenant_id: str) -> audit.Anchor:
    (head,) = await audit.heads(owner, [tenant_id])
    return audit.Anchor(head["seal_seq"], head["hash"], "test")


async def test_a_truncated_chain_tail_is_found_against_the_anchor(client, owner):
    api, _ = await tenant_with_history(client, owner)
    await seal_all(owner)
    anchor = await anchor_of_head(owner, api.tenant_id)
    await as_privileged(owner, ("DELETE FROM audit_links WHERE tenant_id = $1 AND seal_seq > $2",
                                api.tenant_id, anchor.seal_seq - 2))
    assert await findings(owner, api.tenant_id, [anchor])


async def test_a_chain_replaced_consistently_verifies_alone_but_not_against_its_anchor(client, owner):
    api, made = await tenant_with_history(client, owner)
    await seal_all(owner)
    anchor = await anchor_of_head(owner, api.tenant_id)
    # The forger edits an amount (and the caches that show it), deletes the links and has them all sealed again.
    await as_privileged(owner, *TAMPERING["entry amount updated"](made),
                        ("DELETE FROM audit_links WHERE tenant_id = $1", api.tenant_id),
                        (("UPDATE ledger_transaction_versions SET audit_txid = pg_current_xact_id() "
                          "WHERE tenant_id = $1"), api.tenant_id),
                        ("UPDATE ledger_accounts SET audit_txid = pg_current_xact_id() WHERE tenant_id = $1",
                         api.tenant_id))
    await seal_all(owner)
    assert (await audit.verify_chain(owner, api.tenant_id)).findings == []
    report = await audit.verify_chain(owner, api.tenant_id, [anchor])
    assert [f.link for f in report.findings] == [anchor.seal_seq]
