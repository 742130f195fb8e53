"""A transition (pending -> posted) and a reversal find their ledger transaction by its primary key, whatever the
tenant's transactions grow to: the lookup keeps the one generic plan ledger_transition / ledger_post make on a
connection's first call, perhaps while ledger_transactions is still empty, where every (tenant_id, ...) index looked
as cheap as the primary key for `tenant_id = $1` and one of them walked the tenant's every transaction."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from routine_helpers import new_account, new_ledger

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
TRANSACTIONS = 20_000  # of the tenant, added after the plans are made

POST = ("SELECT ledger_post($1, NULL, NULL, $2, $3, 'd', $4, $5, NULL, '{}', $6, $7, $8, $9, ARRAY[5, 5]::bigint[],"
        " '{}'::uuid[], '[]', '{}')")
TRANSITION = ("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)"
              " SELECT ledger_transition($1, $2, 1, 'posted', NULL, NULL, false, '{}')")


def buffers(plan: str) -> int:
    top = json.loads(plan)[0]["Plan"]
    return top["Shared Hit Blocks"] + top["Shared Read Blocks"]


async def post(conn, tenant, ledger, accounts, status="posted", reverses=None, explain=False):
    txn, directions = uuid.uuid4(), ["credit", "debit"] if reverses else ["debit", "credit"]
    args = (tenant, txn, ledger, status, AT, reverses, [uuid.uuid4(), uuid.uuid4()], [a.id for a in accounts],
            directions)
    if explain:
        return buffers(await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + POST, *args))
    await conn.fetchval(POST, *args)
    return txn


async def transition_buffers(conn, tenant, ledger, accounts) -> int:
    """Buffers of one transition of a new pending transaction to posted."""
    txn = await post(conn, tenant, ledger, accounts, status="pending")
    return buffers(await conn.fetchval(TRANSITION, tenant, txn))


async def reversal_buffers(conn, tenant, ledger, accounts) -> int:
    """Buffers of one reversal of a new posted transaction."""
    txn = await post(conn, tenant, ledger, accounts)
    return await post(conn, tenant, ledger, accounts, reverses=txn, explain=True)


async def as_role(conn, role: str, tenant: str) -> None:
    await conn.execute("RESET ROLE")
    if role == "ledger_app":  # row-level security's policy on every table read
        await conn.execute(f"SET ROLE ledger_app; SET ledger.tenant = '{tenant}'")


@pytest.mark.parametrize("role", ["superuser", "ledger_app"])
@pytest.mark.parametrize("measure", [transition_buffers, reversal_buffers], ids=["transition", "reversal"])
async def test_a_lookup_reads_as_much_with_many_transactions_as_with_none(make_database, role, measure):
    conn = await asyncpg.connect(make_database(f"lookup_reads_{role}_{measure.__name__}"))  # this connection's plans
    try:
        tenant, ledger = await new_ledger(conn)
        accounts = [await new_account(conn, "debit", tenant=tenant, ledger=ledger),
                    await new_account(conn, "credit", tenant=tenant, ledger=ledger)]
        await as_role(conn, role, tenant)
        await measure(conn, tenant, ledger, accounts)  # the plans are made here
        before = await measure(conn, tenant, ledger, accounts)
        await as_role(conn, "superuser", tenant)
        await conn.execute("INSERT INTO ledger_transactions (id, tenant_id, ledger_id, status, effective_at, metadata,"
                           " created_at, updated_at) SELECT gen_random_uuid(), $1, $2, 'posted', $3, '{}', $3, $3"
                           " FROM generate_series(1, $4)", tenant, ledger, AT, TRANSACTIONS)
        await as_role(conn, role, tenant)
        after = await measure(conn, tenant, ledger, accounts)
        # Measured: a few buffers more (the primary key one level deeper); the walk was ~400 buffers more.
        assert after < before + 30, (before, after)
    finally:
        await conn.close()
