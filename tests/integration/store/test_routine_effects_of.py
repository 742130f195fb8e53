"""ledger_effects_of, the balance effects of writing, posting and archiving entries, on debit and credit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

EFFECTS = ("SELECT account_id, entry_id, kind, d_pending_debits, d_pending_credits, d_posted_debits,"
           " d_posted_credits, effective_at FROM ledger_effects_of($1, $2, $3, $4, $5, $6, $7)")
AT = datetime(2026, 3, 1, 12, tzinfo=UTC)


async def deltas(db, direction: str, amount: int, kind: str, posted: bool = False) -> tuple[int, int, int, int]:
    """(pending debits, pending credits, posted debits, posted credits) of one entry's effect."""
    rows = await db.fetch(EFFECTS, [uuid.uuid4()], [uuid.uuid4()], [direction], [amount], kind, posted, [AT])
    assert len(rows) == 1
    r = rows[0]
    return r["d_pending_debits"], r["d_pending_credits"], r["d_posted_debits"], r["d_posted_credits"]


async def test_a_pending_entry_counts_in_pending_only(db):
    assert await deltas(db, "debit", 5, "entry") == (5, 0, 0, 0)
    assert await deltas(db, "credit", 5, "entry") == (0, 5, 0, 0)


async def test_a_posted_entry_counts_in_pending_and_posted(db):
    assert await deltas(db, "debit", 5, "entry", posted=True) == (5, 0, 5, 0)
    assert await deltas(db, "credit", 5, "entry", posted=True) == (0, 5, 0, 5)


@pytest.mark.parametrize("posted", [False, True])  # p_posted speaks of a new entry only
async def test_posting_a_pending_entry_adds_it_to_posted_only(db, posted):
    assert await deltas(db, "debit", 5, "post", posted) == (0, 0, 5, 0)
    assert await deltas(db, "credit", 5, "post", posted) == (0, 0, 0, 5)


@pytest.mark.parametrize("posted", [False, True])
async def test_archiving_a_pending_entry_removes_it_from_pending(db, posted):
    assert await deltas(db, "debit", 5, "archive", posted) == (-5, 0, 0, 0)
    assert await deltas(db, "credit", 5, "archive", posted) == (0, -5, 0, 0)


async def test_the_largest_amount_keeps_its_value(db):
    big = 2**63 - 1
    assert await deltas(db, "credit", big, "entry", posted=True) == (0, big, 0, big)
    assert await deltas(db, "debit", big, "archive") == (-big, 0, 0, 0)


async def test_one_effect_per_entry_in_the_order_given_carrying_its_ids_kind_and_time(db):
    ids, accounts = [uuid.uuid4() for _ in range(4)], [uuid.uuid4() for _ in range(4)]
    times = [AT + timedelta(days=i) for i in range(4)]
    rows = await db.fetch(EFFECTS, ids, accounts, ["debit", "credit", "credit", "debit"], [1, 2, 3, 4], "entry",
                          True, times)
    assert [(r["entry_id"], r["account_id"], r["kind"], r["effective_at"]) for r in rows] == [
        (ids[i], accounts[i], "entry", times[i]) for i in range(4)]
    assert [r["d_posted_debits"] + r["d_posted_credits"] for r in rows] == [1, 2, 3, 4]


async def test_no_entries_no_effects(db):
    assert await db.fetch(EFFECTS, [], [], [], [], "entry", False, []) == []
