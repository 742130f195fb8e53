"""ledger_transition: a pending transaction posted or archived writes its entries' post/archive effects (applied
now on p_apply_all or sync-only accounts, queued otherwise), a new version in the hash chain; a stale version is
LG008, an unknown transaction LG005, any other status change LG006."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from routine_helpers import new_account, new_ledger, raised

TRANSITION = "SELECT ledger_transition($1, $2, $3, $4, $5, $6, $7, $8)"
TOTALS = ("SELECT pending_debits, pending_credits, posted_debits, posted_credits, lock_version"
          " FROM account_balances WHERE account_id = $1")


async def pending_transfer(db, amount: int = 25, *, sync_only: bool = False, status: str = "pending"):
    """A transaction (debit cash, credit wallet) written by ledger_post and applied at once."""
    tenant, ledger = await new_ledger(db)
    cash = await new_account(db, "debit", tenant=tenant, ledger=ledger, sync_only=sync_only)
    wallet = await new_account(db, "credit", tenant=tenant, ledger=ledger)
    txn = uuid.uuid4()
    await db.fetchval(
        "SELECT ledger_post($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)",
        tenant, None, None, txn, ledger, "t", status, datetime.now(UTC), None, {}, None,
        [uuid.uuid4(), uuid.uuid4()], [cash.id, wallet.id], ["debit", "credit"], [amount, amount],
        [cash.id, wallet.id], [], {"version": 1})
    return tenant, txn, cash, wallet


async def totals(db, account) -> tuple:
    return tuple(await db.fetchrow(TOTALS, account.id))


async def test_posting_applies_the_post_effects_and_chains_a_version(db):
    tenant, txn, cash, wallet = await pending_transfer(db)
    assert await totals(db, cash) == (25, 0, 0, 0, 1)
    await db.fetchval(TRANSITION, tenant, txn, 1, "posted", None, None, True, {"version": 2})
    assert await totals(db, cash) == (25, 0, 25, 0, 2)
    assert await totals(db, wallet) == (0, 25, 0, 25, 2)
    row = await db.fetchrow("SELECT status, version, posted_at IS NOT NULL AS posted FROM ledger_transactions"
                            " WHERE id = $1", txn)
    assert tuple(row) == ("posted", 2, True)
    assert await db.fetchval(
        "SELECT v2.prev_hash = v1.hash AND v2.hash = ledger_version_hash(v1.hash, v2.snapshot)"
        " FROM ledger_transaction_versions v1 JOIN ledger_transaction_versions v2 USING (transaction_id)"
        " WHERE transaction_id = $1 AND v1.version = 1 AND v2.version = 2", txn)


async def test_archiving_takes_the_entries_out_of_pending(db):
    tenant, txn, cash, wallet = await pending_transfer(db)
    await db.fetchval(TRANSITION, tenant, txn, 1, "archived", None, None, True, {})
    assert await totals(db, cash) == (0, 0, 0, 0, 2)
    assert await totals(db, wallet) == (0, 0, 0, 0, 2)


async def test_without_apply_all_only_sync_only_accounts_are_applied_the_others_queued(db):
    tenant, txn, cash, wallet = await pending_transfer(db, sync_only=True)
    await db.fetchval(TRANSITION, tenant, txn, 1, "posted", None, None, False, {})
    assert await totals(db, cash) == (25, 0, 25, 0, 2)
    assert await totals(db, wallet) == (0, 25, 0, 0, 1)
    queued = await db.fetch("SELECT kind, d_posted_credits FROM balance_effects"
                            " WHERE account_id = $1 AND applied_at IS NULL", wallet.id)
    assert [tuple(r) for r in queued] == [("post", 25)]


async def test_a_metadata_only_update_writes_a_version_and_no_effect(db):
    tenant, txn, cash, _ = await pending_transfer(db)
    await db.fetchval(TRANSITION, tenant, txn, 1, None, "new", {"k": "v"}, True, {})
    row = await db.fetchrow("SELECT status, description, metadata, version FROM ledger_transactions WHERE id = $1",
                            txn)
    assert tuple(row) == ("pending", "new", {"k": "v"}, 2)
    assert await totals(db, cash) == (25, 0, 0, 0, 1)


async def test_a_stale_version_is_a_retryable_conflict(db):
    tenant, txn, _, _ = await pending_transfer(db)
    assert (await raised(db, TRANSITION, tenant, txn, 2, "posted", None, None, True, {})).sqlstate == "LG008"


async def test_an_unknown_or_other_tenant_s_transaction_is_not_found(db):
    tenant, txn, _, _ = await pending_transfer(db)
    other, _ = await new_ledger(db)
    assert (await raised(db, TRANSITION, tenant, uuid.uuid4(), 1, "posted", None, None, True, {})).sqlstate == "LG005"
    assert (await raised(db, TRANSITION, other, txn, 1, "posted", None, None, True, {})).sqlstate == "LG005"


@pytest.mark.parametrize(("start", "to"), [("posted", "archived"), ("posted", "pending"), ("archived", "posted")])
async def test_only_pending_moves_and_only_to_posted_or_archived(db, start, to):
    tenant, txn, cash, _ = await pending_transfer(db, status=start)
    before = await totals(db, cash)
    assert (await raised(db, TRANSITION, tenant, txn, 1, to, None, None, True, {})).sqlstate == "LG006"
    assert await totals(db, cash) == before


async def test_a_frozen_tenant_is_fenced(db):
    tenant, txn, _, _ = await pending_transfer(db)
    await db.execute("UPDATE tenants SET state = 'frozen' WHERE id = $1", tenant)
    assert (await raised(db, TRANSITION, tenant, txn, 1, "posted", None, None, True, {})).sqlstate == "LG003"


POST = "SELECT ledger_post($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)"


@pytest.fixture
async def committed(routines_database_url):
    """Two connections whose writes are committed (each sees the other's), their tenants their own."""
    conns = [await asyncpg.connect(routines_database_url) for _ in range(2)]
    for conn in conns:
        await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    yield conns
    for conn in conns:
        await conn.close()


async def _changed_since_posted(conn, txn) -> bool:
    return await conn.fetchval("SELECT updated_at >= posted_at AND updated_at >= created_at FROM ledger_transactions"
                               " WHERE id = $1", txn)


async def test_a_reversal_that_waited_for_the_post_of_its_original_leaves_it_changed_after_it_was_posted(committed):
    # The reversal's transaction began (its now()) before the PATCH that posts the original, and reached the original's
    # row after that PATCH committed (it queued behind it): the original is still changed no earlier than it was
    # posted, which the lists of transactions posted (or changed) since a time rely on (cell/store/changes.py).
    patcher, reverser = committed
    tenant, txn, cash, wallet = await pending_transfer(patcher)
    async with reverser.transaction():
        began = await reverser.fetchval("SELECT now()")
        await patcher.fetchval(TRANSITION, tenant, txn, 1, "posted", None, None, True, {"version": 2})
        assert await patcher.fetchval("SELECT posted_at FROM ledger_transactions WHERE id = $1", txn) > began
        await reverser.fetchval(POST, tenant, None, None, uuid.uuid4(), await patcher.fetchval(
            "SELECT ledger_id FROM ledger_transactions WHERE id = $1", txn), "r", "posted", datetime.now(UTC), None,
            {}, txn, [uuid.uuid4(), uuid.uuid4()], [cash.id, wallet.id], ["credit", "debit"], [25, 25],
            [cash.id, wallet.id], [], {"version": 1})
    assert await _changed_since_posted(patcher, txn)


async def test_a_change_that_began_before_a_reversal_committed_never_moves_updated_at_back(committed):
    patcher, reverser = committed
    tenant, txn, cash, wallet = await pending_transfer(patcher, status="posted")
    ledger = await patcher.fetchval("SELECT ledger_id FROM ledger_transactions WHERE id = $1", txn)
    async with patcher.transaction():
        await patcher.fetchval("SELECT now()")
        await reverser.fetchval(POST, tenant, None, None, uuid.uuid4(), ledger, "r", "posted", datetime.now(UTC), None,
                                {}, txn, [uuid.uuid4(), uuid.uuid4()], [cash.id, wallet.id], ["credit", "debit"],
                                [25, 25], [cash.id, wallet.id], [], {"version": 1})
        reversed_at = await reverser.fetchval("SELECT updated_at FROM ledger_transactions WHERE id = $1", txn)
        await patcher.fetchval(TRANSITION, tenant, txn, 1, None, None, {"k": "v"}, True, {"version": 2})
    assert await patcher.fetchval("SELECT updated_at FROM ledger_transactions WHERE id = $1", txn) >= reversed_at
