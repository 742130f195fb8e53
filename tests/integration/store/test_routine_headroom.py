"""ledger_headroom: no posting takes an account's pending debits or credits past 2^63 - 1, counting what the
account holds, what is queued for it and what the posting brings; past 2^62 the account is flagged so that every
later posting to it takes the check; and ledger_apply flags an account whose folded sums pass 2^62."""

from __future__ import annotations

from routine_helpers import new_account, raised

TOP = 2**63 - 1
HALF = 2**62
HEADROOM = "SELECT ledger_headroom($1::uuid[], $2::text[], $3::bigint[])"


async def queue_credit(conn, account, amount: int) -> None:
    await conn.execute(
        "INSERT INTO balance_effects (tenant_id, account_id, entry_id, kind, d_pending_debits, d_pending_credits,"
        " d_posted_debits, d_posted_credits, effective_at)"
        " VALUES ($1, $2, gen_random_uuid(), 'entry', 0, $3, 0, $3, now())", account.tenant, account.id, amount)


async def flagged(conn, account) -> bool:
    return await conn.fetchval("SELECT headroom_low FROM ledger_accounts WHERE id = $1", account.id)


async def test_up_to_the_top_passes_one_more_unit_is_refused(db):
    a = await new_account(db, pending_credits=TOP - 10, posted_credits=TOP - 10)
    assert await raised(db, HEADROOM, [a.id], ["credit"], [10]) is None
    err = await raised(db, HEADROOM, [a.id], ["credit"], [11])
    assert err is not None and err.sqlstate == "LG013"
    assert '"ledger_account_id"' in err.detail and str(TOP + 1) in err.detail
    # The other side of the same account has all its room.
    assert await raised(db, HEADROOM, [a.id], ["debit"], [TOP]) is None


async def test_queued_effects_count(db):
    a = await new_account(db)
    await queue_credit(db, a, TOP)
    err = await raised(db, HEADROOM, [a.id], ["credit"], [1])
    assert err is not None and err.sqlstate == "LG013"


async def test_entries_of_one_account_in_one_posting_add_up(db):
    a = await new_account(db)
    err = await raised(db, HEADROOM, [a.id, a.id], ["credit", "credit"], [TOP, 1])
    assert err is not None and err.sqlstate == "LG013"


async def test_an_account_past_half_the_range_is_flagged(db):
    a, b = await new_account(db), await new_account(db)
    assert await raised(db, HEADROOM, [a.id, b.id], ["credit", "debit"], [HALF, HALF + 1]) is None
    assert (await flagged(db, a), await flagged(db, b)) == (False, True)


async def test_apply_flags_an_account_whose_folded_sums_pass_half_the_range(db):
    a = await new_account(db)
    await queue_credit(db, a, HALF + 1)
    assert not await flagged(db, a)
    await db.fetchval("SELECT applied FROM ledger_apply_report($1::uuid[], false)", [a.id])
    assert await flagged(db, a)
