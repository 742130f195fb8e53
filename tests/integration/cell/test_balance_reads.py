"""Balance reads that arrive together are read together (cell.service.reads): each still gets its own account as a
read alone would, a tenant's batch never holds another tenant's accounts, and a read whose batch was not sent reads
on its own."""

from __future__ import annotations

import asyncio
import uuid

from cell.ledger.errors import DatabaseUnavailable
from cell.service.context import AccountCache, CellContext
from cell.service.reads import (
    READS_PER_STATEMENT_MAX,
    STATEMENTS_IN_FLIGHT_MAX,
    BalanceReads,
)
from cell.store import accounts as store_accounts
from cell.store.db import ACTING_TENANT, create_pool
from tests.integration.conftest import cell_settings


async def _books(api, n: int = 4):
    ledger = await api.ledger()
    accounts = [await api.account(ledger["id"], "debit" if i % 2 else "credit") for i in range(n)]
    for i in range(1, n):
        r = await api.transfer(ledger["id"], accounts[i]["id"], accounts[0]["id"], 100 * i)
        assert r.status_code == 201, r.text
    return accounts


async def test_reads_together_answer_each_their_own_account(api, new_tenant):
    accounts = await _books(api)
    other = await new_tenant()
    other_accounts = await _books(other, 2)
    alone = {a["id"]: (await api.get(f"/api/ledger_accounts/{a['id']}")).content for a in accounts}
    missing = str(uuid.uuid4())
    reads = [(api, a["id"]) for a in accounts] + [(api, accounts[0]["id"]), (api, missing),
                                                  (api, other_accounts[0]["id"]), (other, other_accounts[0]["id"]),
                                                  (other, accounts[1]["id"])]
    answers = await asyncio.gather(*(who.get(f"/api/ledger_accounts/{account_id}") for who, account_id in reads))
    for (who, account_id), r in zip(reads, answers):
        if who is api and account_id in alone:
            assert r.status_code == 200 and r.content == alone[account_id]
        elif who is other and account_id == other_accounts[0]["id"]:
            assert r.status_code == 200 and r.json()["id"] == account_id
        else:  # unknown, or another tenant's: not found, as a read alone
            assert r.status_code == 404 and r.json()["code"] == "not_found"


async def test_reads_ready_together_go_in_one_statement(api, cell_database_url):
    accounts = await _books(api)
    pool = await create_pool(cell_database_url, min_size=1, max_size=2, role="ledger_app")
    ctx = CellContext(settings=cell_settings(cell_database_url), pool=pool, cache=AccountCache(10))
    statements = []

    async def run(fn):
        statements.append(fn)
        return await ctx.run(fn)

    reads = BalanceReads(run)
    acting = ACTING_TENANT.set(api.tenant_id)
    try:
        ids = [uuid.UUID(a["id"]) for a in accounts] + [uuid.uuid4()]
        rows = await asyncio.gather(*(reads.read(api.tenant_id, i) for i in ids))
        assert len(statements) == 1
        assert [row["id"] for row in rows[:-1]] == ids[:-1] and rows[-1] is None
        alone = [await ctx.run(lambda conn, i=i: store_accounts.fetch(conn, api.tenant_id, i)) for i in ids[:-1]]
        assert [dict(row) for row in rows[:-1]] == [dict(row) for row in alone]
        assert [abs(row["posted_amount"]) for row in rows[1:-1]] == [100, 200, 300]

        statements.clear()  # a burst beyond a statement's bound goes in further statements, each read its row
        burst = [ids[i % 4] for i in range(READS_PER_STATEMENT_MAX + 3)]
        rows = await asyncio.gather(*(reads.read(api.tenant_id, i) for i in burst))
        assert len(statements) == 2 and [row["id"] for row in rows] == burst

        leader = asyncio.create_task(reads.read(api.tenant_id, ids[0]))
        joined = asyncio.create_task(reads.read(api.tenant_id, ids[1]))
        await asyncio.sleep(0)  # the first waits for others to join, the second joined it
        leader.cancel()
        assert (await joined)["id"] == ids[1]  # its batch was never sent: it read on its own
        assert leader.cancelled()
    finally:
        ACTING_TENANT.reset(acting)
        await pool.close()


async def test_every_read_of_a_failed_statement_gets_its_error(cell_database_url):
    pool = await create_pool(cell_database_url, min_size=1, max_size=1, role="ledger_app")
    ctx = CellContext(settings=cell_settings(cell_database_url, db_acquire_s_max=1.0), pool=pool,
                      cache=AccountCache(10))
    await pool.close()  # no database to read from
    answers = await asyncio.gather(*(ctx.balance_reads.read("t-none", uuid.uuid4()) for _ in range(3)),
                                   return_exceptions=True)
    assert [type(a) for a in answers] == [DatabaseUnavailable] * 3


async def test_reads_that_arrive_while_statements_are_in_flight_gather_for_the_next(api, new_tenant,
                                                                                       cell_database_url):
    """At most STATEMENTS_IN_FLIGHT_MAX statements of a tenant at a time: the reads that arrive meanwhile, in any
    turn of the event loop, wait together and go in one statement when one is answered; another tenant's do not
    wait for them."""
    accounts = await _books(api)
    other = await new_tenant()
    (other_account,) = await _books(other, 1)
    pool = await create_pool(cell_database_url, min_size=1, max_size=8, role="ledger_app")
    ctx = CellContext(settings=cell_settings(cell_database_url), pool=pool, cache=AccountCache(10))
    statements, answered = [], asyncio.Event()

    async def run(fn):
        statements.append(ACTING_TENANT.get())
        if ACTING_TENANT.get() == api.tenant_id and not answered.is_set():
            await answered.wait()  # held in flight until the test lets it be answered
        return await ctx.run(fn)

    reads = BalanceReads(run)
    ids = [uuid.UUID(a["id"]) for a in accounts]

    async def read(tenant_id, account_id):
        acting = ACTING_TENANT.set(tenant_id)
        try:
            return await reads.read(tenant_id, account_id)
        finally:
            ACTING_TENANT.reset(acting)

    async def turns(n: int = 3) -> None:
        for _ in range(n):
            await asyncio.sleep(0)

    try:
        in_flight = []
        for i in range(STATEMENTS_IN_FLIGHT_MAX):  # one statement each, held
            in_flight.append(asyncio.create_task(read(api.tenant_id, ids[i % len(ids)])))
            await turns()
        assert statements == [api.tenant_id] * STATEMENTS_IN_FLIGHT_MAX
        waiting = []
        for i in range(3):  # in three turns of the loop: they wait, together
            waiting.append(asyncio.create_task(read(api.tenant_id, ids[(i + 1) % len(ids)])))
            await turns()
        assert len(statements) == STATEMENTS_IN_FLIGHT_MAX
        other_row = await read(other.tenant_id, uuid.UUID(other_account["id"]))  # another tenant's: at once
        assert str(other_row["id"]) == other_account["id"] and len(statements) == STATEMENTS_IN_FLIGHT_MAX + 1
        answered.set()
        rows = await asyncio.gather(*in_flight, *waiting)
        assert [row["id"] for row in rows] == [ids[i % len(ids)] for i in range(STATEMENTS_IN_FLIGHT_MAX)] + [
            ids[(i + 1) % len(ids)] for i in range(3)]
        assert statements.count(api.tenant_id) == STATEMENTS_IN_FLIGHT_MAX + 1  # the three in one statement
        assert not reads._in_flight and not reads._landing and not reads._forming  # nothing left behind
    finally:
        await pool.close()
