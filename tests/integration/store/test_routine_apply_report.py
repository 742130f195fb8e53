"""ledger_apply_report, the worker's apply: a group's queued effects folded in, and what it reports: how many, the
accounts it skipped (locked by someone else), one apply lag per effect; accounts with no balance row or of a tenant
not active are neither applied nor skipped."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from routine_helpers import new_account, new_ledger
from test_routine_apply import queue, totals

REPORT = "SELECT applied, skipped, lags_ms FROM ledger_apply_report($1::uuid[], $2)"


@pytest.fixture
async def committed(routines_database_url):
    """A connection whose writes are committed (another connection must see them), its tenants its own."""
    conn = await asyncpg.connect(routines_database_url)
    yield conn
    await conn.close()


async def test_the_queued_effects_are_applied_with_one_lag_each(db):
    a, b = await new_account(db, "debit"), await new_account(db, "credit")
    for account in (a, a, b):
        await queue(db, account, "debit", 5)
    row = await db.fetchrow(REPORT, [b.id, a.id], False)
    assert (row["applied"], row["skipped"]) == (3, [])
    assert len(row["lags_ms"]) == 3 and all(lag >= 0 for lag in row["lags_ms"])
    assert (await totals(db, a))[-1] == 2 and (await totals(db, b))[-1] == 1
    assert (await db.fetchrow(REPORT, [a.id, b.id], False))["applied"] == 0


async def test_an_id_without_a_balance_row_is_neither_applied_nor_skipped(db):
    a = await new_account(db)
    await queue(db, a, "credit", 7)
    row = await db.fetchrow(REPORT, [a.id, uuid.uuid4()], True)
    assert (row["applied"], row["skipped"]) == (1, [])


async def test_a_tenant_not_active_is_left_alone_in_a_group_with_an_active_one(db):
    active = await new_account(db)
    frozen_tenant, frozen_ledger = await new_ledger(db, "frozen")
    frozen = await new_account(db, tenant=frozen_tenant, ledger=frozen_ledger)
    await queue(db, active, "credit", 1)
    await queue(db, frozen, "credit", 1)
    row = await db.fetchrow(REPORT, [frozen.id, active.id], True)
    assert (row["applied"], row["skipped"]) == (1, [])
    assert await db.fetchval("SELECT count(*) FROM balance_effects WHERE account_id = $1 AND applied_at IS NULL",
                             frozen.id) == 1


async def test_with_skip_locked_an_account_locked_elsewhere_is_skipped_in_order_and_the_rest_applied(
        committed, routines_database_url):
    tenant, ledger = await new_ledger(committed)
    accounts = [await new_account(committed, tenant=tenant, ledger=ledger) for _ in range(4)]
    for account in accounts:
        await queue(committed, account, "debit", 3)
    locked = sorted(a.id for a in accounts)[1:3]
    holder = await asyncpg.connect(routines_database_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM account_balances WHERE account_id = ANY($1::uuid[]) FOR UPDATE",
                                 locked)
            row = await committed.fetchrow(REPORT, [a.id for a in accounts], True)
            assert (row["applied"], row["skipped"]) == (2, locked)
        row = await committed.fetchrow(REPORT, locked, False)
        assert (row["applied"], row["skipped"]) == (2, [])
    finally:
        await holder.close()
