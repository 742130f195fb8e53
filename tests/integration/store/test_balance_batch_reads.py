"""The balance reads of one tenant read together (ledger_accounts_current, under store.accounts.fetch_current) find
the tenant's accounts asked for and nothing else, and cost what the ids ask for, not what the tenant holds: a batch
of two reads as few buffers in a tenant of thousands of accounts as in a tenant of three."""

from __future__ import annotations

import json
import uuid

import asyncpg
from routine_helpers import new_account, new_ledger

from cell.store import accounts as store
from cell.store.queries import Q

MORE_ACCOUNTS = 3_000


async def as_tenant(url: str, tenant: str) -> asyncpg.Connection:
    """A connection as the API's pool makes it: ledger_app, acting for `tenant` (row-level security)."""
    conn = await asyncpg.connect(url)
    await conn.execute("SET ROLE ledger_app")
    await conn.execute("SELECT set_config('ledger.tenant', $1, false)", tenant)
    return conn


async def batch_buffers(conn: asyncpg.Connection, tenant: str, ids: list) -> int:
    plan = await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + Q["fetch_accounts_current"], tenant, ids)
    top = json.loads(plan)[0]["Plan"]
    return top["Shared Hit Blocks"] + top["Shared Read Blocks"]


async def test_a_batch_reads_the_tenants_accounts_asked_for_and_no_others(make_database):
    url = make_database("batch_reads_scope")
    owner = await asyncpg.connect(url)
    try:
        tenant, ledger = await new_ledger(owner)
        mine = [await new_account(owner, normal, tenant=tenant, ledger=ledger, posted_debits=7, posted_credits=2)
                for normal in ("debit", "credit")]
        theirs = await new_account(owner)
    finally:
        await owner.close()
    conn = await as_tenant(url, tenant)
    try:
        rows = await store.fetch_current(conn, tenant, [mine[0].id, mine[1].id, theirs.id, uuid.uuid4()])
        assert {r["id"]: r["posted_amount"] for r in rows} == {mine[0].id: 5, mine[1].id: -5}
        one = await store.fetch(conn, tenant, mine[0].id)
        assert [dict(r) for r in rows if r["id"] == mine[0].id] == [dict(one)]  # the row one read gets
        # Asked with the other tenant's id, as the other tenant: row-level security still holds it to the session's.
        assert await store.fetch_current(conn, theirs.tenant, [theirs.id]) == []
    finally:
        await conn.close()


async def many_accounts(conn: asyncpg.Connection, tenant: str, ledger: uuid.UUID, n: int) -> None:
    await conn.execute(
        "WITH a AS (INSERT INTO ledger_accounts (id, tenant_id, ledger_id, name, normal_balance, currency,"
        " currency_exponent) SELECT gen_random_uuid(), $1, $2, 'a', 'credit', 'USD', 2 FROM generate_series(1, $3)"
        " RETURNING id) INSERT INTO account_balances (account_id, tenant_id) SELECT id, $1 FROM a", tenant, ledger, n)


async def test_a_batch_of_two_reads_as_much_in_a_large_tenant_as_in_a_small_one(make_database):
    url = make_database("batch_reads_cost")
    owner = await asyncpg.connect(url)
    try:
        buffers = {}
        for size in (3, MORE_ACCOUNTS):
            tenant, ledger = await new_ledger(owner)
            await many_accounts(owner, tenant, ledger, size)
            # Not analyzed (a young cell's tables): the planner expects few accounts for a tenant_id.
            asked = [r["id"] for r in await owner.fetch("SELECT id FROM ledger_accounts WHERE tenant_id = $1 LIMIT 2",
                                                        tenant)]
            conn = await as_tenant(url, tenant)
            try:
                # The plan the pool's prepared statement keeps once it has run a few times: a generic one.
                await conn.execute("SET plan_cache_mode = force_generic_plan")
                await batch_buffers(conn, tenant, asked)  # planned here: reads the catalogs
                buffers[size] = await batch_buffers(conn, tenant, asked)
            finally:
                await conn.close()
        # The index probes of two ids, whatever the tenant holds. The statement this routine replaced read 6 -> 12 here
        # (a seq scan planned on one page), and in a running cell its generic plan was a hash join over the tenant's
        # accounts (25 buffers for 2 of 1,001 accounts, growing with the tenant).
        assert buffers[MORE_ACCOUNTS] < buffers[3] + 5, buffers
    finally:
        await owner.close()
