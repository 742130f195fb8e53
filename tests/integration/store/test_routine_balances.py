"""ledger_balances, the balance formulas (Modern Treasury's definitions) for both normal balances."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

BALANCES = ("SELECT pending_amount, posted_amount, available_debits, available_credits, available_amount"
            " FROM ledger_balances($1, $2, $3, $4, $5)")

# An account that received 1000 posted credits, 300 posted debits, plus pending 200 credits and 50 debits:
# pending = posted + still-pending entries.
T = (350, 1200, 300, 1000)  # pending debits, pending credits, posted debits, posted credits


async def balances(db, normal: str, totals) -> dict:
    return dict(await db.fetchrow(BALANCES, normal, *totals))


async def test_credit_normal_balances(db):
    b = await balances(db, "credit", T)
    assert b["pending_amount"] == 1200 - 350
    assert b["posted_amount"] == 1000 - 300
    # Posted money in, minus everything promised out (pending debits include the posted ones).
    assert b["available_amount"] == 1000 - 350
    assert (b["available_debits"], b["available_credits"]) == (350, 1000)


async def test_debit_normal_balances_are_mirrored(db):
    b = await balances(db, "debit", T)
    assert b["pending_amount"] == 350 - 1200
    assert b["posted_amount"] == 300 - 1000
    assert b["available_amount"] == 300 - 1200
    assert (b["available_debits"], b["available_credits"]) == (300, 1200)


async def test_debit_normal_account_funded_by_debits(db):
    b = await balances(db, "debit", (500, 120, 500, 20))
    assert (b["pending_amount"], b["posted_amount"], b["available_amount"]) == (380, 480, 380)


async def test_a_pending_credit_is_not_yet_available_but_a_pending_debit_already_reduces_it(db):
    # Funded with 100 posted credits; then a pending credit of 40 in, or a pending debit of 30 out.
    incoming = await balances(db, "credit", (0, 140, 0, 100))
    outgoing = await balances(db, "credit", (30, 100, 0, 100))
    assert incoming["available_amount"] == 100
    assert incoming["pending_amount"] == 140
    assert outgoing["available_amount"] == 70
    assert outgoing["posted_amount"] == 100


async def test_a_fresh_account_is_all_zero(db):
    for normal in ("credit", "debit"):
        assert await balances(db, normal, (0, 0, 0, 0)) == {
            "pending_amount": 0, "posted_amount": 0, "available_debits": 0, "available_credits": 0,
            "available_amount": 0}


async def test_balances_beyond_64_bits_do_not_overflow(db):
    big = 2**63 - 1
    b = await balances(db, "credit", (0, 3 * big, 0, 3 * big))
    assert b["pending_amount"] == 3 * big
    assert b["available_amount"] == 3 * big
    b = await balances(db, "debit", (2**100, 0, 2**100, 1))
    assert b["posted_amount"] == 2**100 - 1 and b["available_amount"] == 2**100


# -- properties -----------------------------------------------------------------------------------------------

totals = st.tuples(*[st.integers(0, 2**64)] * 4)


@settings(max_examples=60, deadline=None)
@given(totals, st.sampled_from(["credit", "debit"]))
def test_every_amount_is_its_credits_and_debits_in_the_normal_direction(sync_db, t, normal):
    pd, pc, od, oc = t
    b = sync_db.fetchrow(BALANCES, normal, pd, pc, od, oc)

    def signed(debits, credits):
        return credits - debits if normal == "credit" else debits - credits

    assert b["pending_amount"] == signed(pd, pc)
    assert b["posted_amount"] == signed(od, oc)
    assert b["available_amount"] == signed(b["available_debits"], b["available_credits"])
    assert b["available_amount"] == (oc - pd if normal == "credit" else od - pc)


amounts = st.integers(1, 2**63 - 1)
entry_lives = st.lists(st.tuples(st.sampled_from(["debit", "credit"]), amounts,
                                 st.sampled_from(["pending", "posted", "pending->posted", "pending->archived"])),
                       max_size=12)


def fold(lives) -> tuple[int, int, int, int]:
    """The account after every entry's life (created, then maybe posted or archived): pending holds the entries
    pending or posted at the end, posted the posted ones."""

    def total(direction, statuses):
        return sum(a for d, a, life in lives if d == direction and life.split("->")[-1] in statuses)

    return (total("debit", {"pending", "posted"}), total("credit", {"pending", "posted"}),
            total("debit", {"posted"}), total("credit", {"posted"}))


@settings(max_examples=60, deadline=None)
@given(entry_lives, st.sampled_from(["credit", "debit"]))
def test_available_never_exceeds_pending_or_posted(sync_db, lives, normal):
    b = sync_db.fetchrow(BALANCES, normal, *fold(lives))
    assert b["available_amount"] <= b["pending_amount"]
    assert b["available_amount"] <= b["posted_amount"]


@settings(max_examples=60, deadline=None)
@given(entry_lives)
def test_the_two_normal_balances_are_negatives_for_pending_and_posted(sync_db, lives):
    credit = sync_db.fetchrow(BALANCES, "credit", *fold(lives))
    debit = sync_db.fetchrow(BALANCES, "debit", *fold(lives))
    assert credit["pending_amount"] == -debit["pending_amount"]
    assert credit["posted_amount"] == -debit["posted_amount"]
