"""ledger_apply, the one routine that folds balance effects into the caches: queued effects first, in sequence
order, then the caller's; one lock_version per effect; resulting balances, totals and effective-time buckets.
With ledger_effects_of it makes the lifecycle of an entry's balances (pending, posted, archived)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from routine_helpers import new_account, raised
from hypothesis import given, settings
from hypothesis import strategies as st

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
APPLY_NEW = ("SELECT ledger_apply($1::uuid[], $2, ARRAY(SELECT f FROM ledger_effects_of($3, $4, $5, $6, $7, $8, $9) f))")
TOTALS = ("SELECT pending_debits, pending_credits, posted_debits, posted_credits, lock_version"
          " FROM account_balances WHERE account_id = $1")


async def apply_entry(conn, account, direction: str, amount: int, kind: str, posted: bool = False,
                      entry: uuid.UUID | None = None) -> uuid.UUID:
    """One entry's effect of `kind`, handed to ledger_apply as a new effect (the sync path)."""
    entry = entry or uuid.uuid4()
    await conn.fetchval(APPLY_NEW, [account.id], account.tenant, [entry], [account.id], [direction], [amount],
                        kind, posted, [AT])
    return entry


async def totals(conn, account) -> tuple:
    return tuple(await conn.fetchrow(TOTALS, account.id))


async def queue(conn, account, direction: str, amount: int, kind: str = "entry", posted: bool = True) -> uuid.UUID:
    """An unapplied effect (the async path's queue)."""
    entry = uuid.uuid4()
    await conn.execute(
        "INSERT INTO balance_effects (tenant_id, account_id, entry_id, kind, d_pending_debits, d_pending_credits,"
        " d_posted_debits, d_posted_credits, effective_at)"
        " SELECT $1, f.account_id, f.entry_id, f.kind, f.d_pending_debits, f.d_pending_credits, f.d_posted_debits,"
        " f.d_posted_credits, f.effective_at FROM ledger_effects_of($2, $3, $4, $5, $6, $7, $8) f",
        account.tenant, [entry], [account.id], [direction], [amount], kind, posted, [AT])
    return entry


async def test_pending_then_posted_equals_posted_at_once_but_takes_two_lock_versions(db):
    for direction in ("debit", "credit"):
        two = await new_account(db, pending_debits=1, pending_credits=2, posted_debits=1, posted_credits=2,
                                lock_version=4)
        one = await new_account(db, pending_debits=1, pending_credits=2, posted_debits=1, posted_credits=2,
                                lock_version=4)
        entry = await apply_entry(db, two, direction, 9, "entry")
        await apply_entry(db, two, direction, 9, "post", entry=entry)
        await apply_entry(db, one, direction, 9, "entry", posted=True)
        assert (await totals(db, two))[4] == 6 and (await totals(db, one))[4] == 5
        assert (await totals(db, two))[:4] == (await totals(db, one))[:4]


async def test_pending_then_archived_leaves_the_balances_as_they_were(db):
    for direction in ("debit", "credit"):
        account = await new_account(db, pending_debits=10, pending_credits=20, posted_debits=5, posted_credits=15,
                                    lock_version=2)
        entry = await apply_entry(db, account, direction, 9, "entry")
        await apply_entry(db, account, direction, 9, "archive", entry=entry)
        assert await totals(db, account) == (10, 20, 5, 15, 4)


async def test_queued_effects_come_first_in_sequence_order_then_the_new_ones(db):
    account = await new_account(db)
    first, second = await queue(db, account, "credit", 100), await queue(db, account, "debit", 30)
    mine = uuid.uuid4()
    assert await db.fetchval(APPLY_NEW, [account.id], account.tenant, [mine], [account.id], ["credit"], [5], "entry",
                             True, [AT]) == 3
    rows = await db.fetch("SELECT entry_id, lock_version, pending_debits, pending_credits, posted_debits,"
                          " posted_credits FROM balance_effects WHERE account_id = $1 ORDER BY lock_version",
                          account.id)
    assert [tuple(r) for r in rows] == [(first, 1, 0, 100, 0, 100), (second, 2, 30, 100, 30, 100),
                                        (mine, 3, 30, 105, 30, 105)]
    assert await totals(db, account) == (30, 105, 30, 105, 3)
    assert await db.fetchval("SELECT count(*) FROM balance_effects WHERE account_id = $1 AND applied_at IS NULL",
                             account.id) == 0


async def test_the_effective_time_cache_gets_each_day_s_deltas(db):
    account = await new_account(db)
    await queue(db, account, "credit", 100)
    await apply_entry(db, account, "debit", 30, "entry")
    day = await db.fetchrow("SELECT day, pending_debits, pending_credits, posted_debits, posted_credits"
                            " FROM effective_balance_buckets WHERE account_id = $1", account.id)
    assert tuple(day) == (AT.date(), 30, 100, 0, 100)


async def test_only_the_accounts_named_are_applied_and_the_count_is_returned(db):
    a, b = await new_account(db), await new_account(db)
    await queue(db, a, "credit", 1)
    await queue(db, a, "credit", 2)
    await queue(db, b, "credit", 3)
    assert await db.fetchval("SELECT ledger_apply($1::uuid[])", [a.id]) == 2
    assert await totals(db, a) == (0, 3, 0, 3, 2)
    assert await totals(db, b) == (0, 0, 0, 0, 0)
    assert await db.fetchval("SELECT ledger_apply($1::uuid[])", [a.id]) == 0  # nothing left to apply
    assert await db.fetchval("SELECT ledger_apply($1::uuid[])", [uuid.uuid4()]) == 0  # no balance row


async def test_a_new_effect_on_an_account_not_named_is_a_programmer_error(db):
    a, b = await new_account(db), await new_account(db)
    error = await raised(db, APPLY_NEW, [a.id], a.tenant, [uuid.uuid4()], [b.id], ["debit"], [1], "entry", False,
                         [AT])
    assert error is not None and "not locked" in str(error)
    assert await totals(db, a) == (0, 0, 0, 0, 0)


async def test_the_signature_has_no_skip_locked(db):
    signatures = await db.fetch("SELECT pg_get_function_identity_arguments(oid) AS args FROM pg_proc"
                                " WHERE proname = 'ledger_apply'")
    assert [r["args"] for r in signatures] == ["p_accounts uuid[], p_tenant text, p_new ledger_new_effect[]"]


# -- properties: an entry's whole life through the routines ---------------------------------------------------

amounts = st.integers(1, 2**63 - 1)
entry_lives = st.lists(st.tuples(st.sampled_from(["debit", "credit"]), amounts,
                                 st.sampled_from(["pending", "posted", "pending->posted", "pending->archived"])),
                       max_size=12)


def fold(sync_db, lives, normal="credit") -> tuple:
    """A fresh account after every entry's life (created, then maybe posted or archived), each step an effect of
    ledger_effects_of applied by ledger_apply; its totals, with ledger_balances' amounts of them."""

    async def go():
        account = await new_account(sync_db.conn, normal)
        for direction, amount, life in lives:
            entry = await apply_entry(sync_db.conn, account, direction, amount, "entry", posted=life == "posted")
            if "->" in life:
                await apply_entry(sync_db.conn, account, direction, amount,
                                  "post" if life.endswith("posted") else "archive", entry=entry)
        t = await totals(sync_db.conn, account)
        b = await sync_db.conn.fetchrow("SELECT * FROM ledger_balances($1, $2, $3, $4, $5)", normal, *t[:4])
        return t, dict(b)

    return sync_db.run(go())


@settings(max_examples=25, deadline=None)
@given(entry_lives)
def test_the_deltas_add_up_to_the_sums_of_entries_by_final_status(sync_db, lives):
    (pd, pc, od, oc, lock_version), _ = fold(sync_db, lives)

    def total(direction, statuses):
        return sum(a for d, a, life in lives if d == direction and life.split("->")[-1] in statuses)

    assert pd == total("debit", {"pending", "posted"})
    assert pc == total("credit", {"pending", "posted"})
    assert od == total("debit", {"posted"})
    assert oc == total("credit", {"posted"})
    assert lock_version == len(lives) + sum("->" in life for _, _, life in lives)


@settings(max_examples=25, deadline=None)
@given(entry_lives, st.sampled_from(["credit", "debit"]))
def test_available_never_exceeds_pending_or_posted(sync_db, lives, normal):
    _, b = fold(sync_db, lives, normal)
    assert b["available_amount"] <= b["pending_amount"]
    assert b["available_amount"] <= b["posted_amount"]


@settings(max_examples=25, deadline=None)
@given(entry_lives)
def test_the_two_normal_balances_are_negatives_for_pending_and_posted(sync_db, lives):
    _, credit = fold(sync_db, lives, "credit")
    _, debit = fold(sync_db, lives, "debit")
    assert credit["pending_amount"] == -debit["pending_amount"]
    assert credit["posted_amount"] == -debit["posted_amount"]
