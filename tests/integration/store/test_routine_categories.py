"""ledger_category_refresh (the closure made what the graph says for the pairs asked), ledger_category_sums (a
category's current sums over its closure) and ledger_balances_at over a set of accounts."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone

from routine_helpers import new_account, new_ledger

REFRESH = "SELECT ledger_category_refresh($1, $2::uuid[], $3::uuid[])"
REACHED = "SELECT account_id FROM ledger_account_category_closure WHERE category_id = $1 AND reachable"


async def new_category(db, tenant: str, ledger: uuid.UUID) -> uuid.UUID:
    category = uuid.uuid4()
    await db.execute("INSERT INTO ledger_account_categories (id, tenant_id, ledger_id, name, normal_balance, "
                     "currency, currency_exponent) VALUES ($1, $2, $3, 'c', 'credit', 'USD', 2)",
                     category, tenant, ledger)
    return category


async def reached(db, category: uuid.UUID) -> set[uuid.UUID]:
    return {r["account_id"] for r in await db.fetch(REACHED, category)}


async def test_the_closure_follows_memberships_and_edges_both_ways(db):
    tenant, ledger = await new_ledger(db)
    top, sub = await new_category(db, tenant, ledger), await new_category(db, tenant, ledger)
    a = await new_account(db, tenant=tenant, ledger=ledger)
    b = await new_account(db, tenant=tenant, ledger=ledger)
    await db.execute("INSERT INTO ledger_account_category_members (category_id, account_id, tenant_id) "
                     "VALUES ($1, $2, $3), ($4, $5, $3)", sub, a.id, tenant, top, b.id)
    await db.execute("INSERT INTO ledger_account_category_edges (parent_id, child_id, tenant_id) VALUES ($1, $2, $3)",
                     top, sub, tenant)
    assert await db.fetchval(REFRESH, tenant, [top, sub], [a.id, b.id]) == 3
    assert await reached(db, top) == {a.id, b.id} and await reached(db, sub) == {a.id}
    assert await db.fetchval(REFRESH, tenant, [top, sub], [a.id, b.id]) == 0  # nothing to change

    # The edge ends: top no longer reaches a; a membership ends: sub no longer reaches a.
    await db.execute("UPDATE ledger_account_category_edges SET removed_at = now() WHERE parent_id = $1", top)
    assert await db.fetchval(REFRESH, tenant, [top], [a.id]) == 1
    assert await reached(db, top) == {b.id}
    await db.execute("UPDATE ledger_account_category_members SET removed_at = now() WHERE category_id = $1", sub)
    assert await db.fetchval(REFRESH, tenant, [sub], [a.id]) == 1
    assert await reached(db, sub) == set()
    # Only the pairs asked for are touched: b stays reachable from top though top was refreshed for a.
    assert await reached(db, top) == {b.id}


async def test_an_account_reached_twice_stays_when_one_path_ends(db):
    tenant, ledger = await new_ledger(db)
    top, left, right = [await new_category(db, tenant, ledger) for _ in range(3)]
    a = await new_account(db, tenant=tenant, ledger=ledger)
    await db.execute("INSERT INTO ledger_account_category_members (category_id, account_id, tenant_id) "
                     "VALUES ($1, $3, $4), ($2, $3, $4)", left, right, a.id, tenant)
    await db.execute("INSERT INTO ledger_account_category_edges (parent_id, child_id, tenant_id) "
                     "VALUES ($1, $2, $4), ($1, $3, $4)", top, left, right, tenant)
    await db.fetchval(REFRESH, tenant, [top, left, right], [a.id])
    await db.execute("UPDATE ledger_account_category_edges SET removed_at = now() WHERE child_id = $1", left)
    assert await db.fetchval(REFRESH, tenant, [top], [a.id]) == 0
    assert await reached(db, top) == {a.id}


async def test_category_sums_and_balances_at_add_up_their_accounts(db):
    tenant, ledger = await new_ledger(db)
    category = await new_category(db, tenant, ledger)
    a = await new_account(db, tenant=tenant, ledger=ledger, pending_debits=5, pending_credits=100, posted_debits=5,
                          posted_credits=70)
    b = await new_account(db, tenant=tenant, ledger=ledger, pending_debits=1, pending_credits=2, posted_debits=3,
                          posted_credits=4)
    await new_account(db, tenant=tenant, ledger=ledger, pending_credits=1000)  # not in the category
    await db.execute("INSERT INTO ledger_account_category_members (category_id, account_id, tenant_id) "
                     "VALUES ($1, $2, $4), ($1, $3, $4)", category, a.id, b.id, tenant)
    await db.fetchval(REFRESH, tenant, [category], [a.id, b.id])
    assert tuple(await db.fetchrow("SELECT * FROM ledger_category_sums($1)", category)) == (6, 102, 8, 74)
    assert tuple(await db.fetchrow("SELECT * FROM ledger_category_sums($1)", uuid.uuid4())) == (0, 0, 0, 0)

    # As of an effective time: the day buckets before its day, that day's applied effects up to it.
    for account, day, credits in ((a.id, "2024-01-01", 10), (b.id, "2024-01-01", 20), (b.id, "2024-01-03", 40)):
        await db.execute("INSERT INTO effective_balance_buckets (account_id, day, pending_credits, posted_credits) "
                         "VALUES ($1, $2::date, $3, $3)", account, date.fromisoformat(day),
                         credits)
    at = "SELECT posted_credits FROM ledger_balances_at($1::uuid[], $2::timestamptz, true)"
    assert await db.fetchval(at, [a.id, b.id], datetime(2024, 1, 2, tzinfo=timezone.utc)) == 30
    assert await db.fetchval(at, [a.id, b.id], datetime(2024, 1, 4, tzinfo=timezone.utc)) == 70
    assert await db.fetchval(at, [b.id], datetime(2024, 1, 4, tzinfo=timezone.utc)) == 60
    one = "SELECT posted_credits FROM ledger_balance_at($1, $2::timestamptz, true)"
    assert await db.fetchval(one, b.id, datetime(2024, 1, 4, tzinfo=timezone.utc)) == 60
