"""Balance arithmetic (Modern Treasury's definitions) for both normal balances, and the lifecycle deltas."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cell.ledger.balances import (
    available_amount,
    balance_amounts,
    balances_view,
    entry_archived,
    entry_created,
    entry_posted,
    pending_amount,
    posted_amount,
)
from cell.ledger.models import Delta, Totals

# An account that received 1000 posted credits, 300 posted debits, plus pending 200 credits and 50 debits:
# pending = posted + still-pending entries.
T = Totals(pending_debits=350, pending_credits=1200, posted_debits=300, posted_credits=1000, lock_version=7)


def test_credit_normal_balances():
    assert pending_amount(T, "credit") == 1200 - 350
    assert posted_amount(T, "credit") == 1000 - 300
    # Posted money in, minus everything promised out (pending debits include the posted ones).
    assert available_amount(T, "credit") == 1000 - 350


def test_debit_normal_balances_are_mirrored():
    assert pending_amount(T, "debit") == 350 - 1200
    assert posted_amount(T, "debit") == 300 - 1000
    assert available_amount(T, "debit") == 300 - 1200


def test_debit_normal_account_funded_by_debits():
    cash = Totals(pending_debits=500, pending_credits=120, posted_debits=500, posted_credits=20)
    assert balance_amounts(cash, "debit") == {
        "pending_balance_amount": 380, "posted_balance_amount": 480, "available_balance_amount": 380}


def test_a_pending_credit_is_not_yet_available_but_a_pending_debit_already_reduces_it():
    funded = Totals(pending_credits=100, posted_credits=100)
    incoming = funded.plus(entry_created("credit", 40, "pending"))
    outgoing = funded.plus(entry_created("debit", 30, "pending"))
    assert available_amount(incoming, "credit") == 100
    assert pending_amount(incoming, "credit") == 140
    assert available_amount(outgoing, "credit") == 70
    assert posted_amount(outgoing, "credit") == 100


def test_a_fresh_account_is_all_zero():
    assert balance_amounts(Totals(), "credit") == balance_amounts(Totals(), "debit") == {
        "pending_balance_amount": 0, "posted_balance_amount": 0, "available_balance_amount": 0}


def test_balances_view_credit_normal():
    view = balances_view(T, "credit", "USD", 2)
    assert view == {
        "pending_balance": {"credits": 1200, "debits": 350, "amount": 850, "currency": "USD", "currency_exponent": 2},
        "posted_balance": {"credits": 1000, "debits": 300, "amount": 700, "currency": "USD", "currency_exponent": 2},
        "available_balance": {"credits": 1000, "debits": 350, "amount": 650, "currency": "USD",
                              "currency_exponent": 2},
    }


def test_balances_view_debit_normal():
    view = balances_view(T, "debit", "JPY", 0)
    assert view["pending_balance"] == {"credits": 1200, "debits": 350, "amount": -850, "currency": "JPY",
                                       "currency_exponent": 0}
    assert view["posted_balance"] == {"credits": 1000, "debits": 300, "amount": -700, "currency": "JPY",
                                      "currency_exponent": 0}
    assert view["available_balance"] == {"credits": 1200, "debits": 300, "amount": -900, "currency": "JPY",
                                         "currency_exponent": 0}


def test_balances_beyond_64_bits_do_not_overflow():
    big = 2**63 - 1
    t = Totals(pending_credits=3 * big, posted_credits=3 * big)
    assert pending_amount(t, "credit") == 3 * big
    assert available_amount(t, "credit") == 3 * big


# -- lifecycle deltas -----------------------------------------------------------------------------------------


def test_a_pending_entry_counts_in_pending_only():
    assert entry_created("debit", 5, "pending") == Delta(5, 0, 0, 0)
    assert entry_created("credit", 5, "pending") == Delta(0, 5, 0, 0)


def test_a_posted_entry_counts_in_pending_and_posted():
    assert entry_created("debit", 5, "posted") == Delta(5, 0, 5, 0)
    assert entry_created("credit", 5, "posted") == Delta(0, 5, 0, 5)


def test_posting_a_pending_entry_adds_it_to_posted_only():
    assert entry_posted("debit", 5) == Delta(0, 0, 5, 0)
    assert entry_posted("credit", 5) == Delta(0, 0, 0, 5)


def test_archiving_a_pending_entry_removes_it_from_pending():
    assert entry_archived("debit", 5) == Delta(-5, 0, 0, 0)
    assert entry_archived("credit", 5) == Delta(0, -5, 0, 0)


def test_pending_then_posted_equals_posted_at_once_but_takes_two_lock_versions():
    start = Totals(1, 2, 1, 2, lock_version=4)
    for direction in ("debit", "credit"):
        two_steps = start.plus(entry_created(direction, 9, "pending")).plus(entry_posted(direction, 9))
        one_step = start.plus(entry_created(direction, 9, "posted"))
        assert two_steps.lock_version == 6 and one_step.lock_version == 5
        assert Totals(two_steps.pending_debits, two_steps.pending_credits, two_steps.posted_debits,
                      two_steps.posted_credits, 5) == one_step


def test_pending_then_archived_leaves_the_balances_as_they_were():
    start = Totals(10, 20, 5, 15, lock_version=2)
    for direction in ("debit", "credit"):
        after = start.plus(entry_created(direction, 9, "pending")).plus(entry_archived(direction, 9))
        assert after == Totals(10, 20, 5, 15, lock_version=4)


def test_totals_minus_is_the_change_between_two_points_and_keeps_the_later_lock_version():
    later = Totals(10, 20, 5, 15, lock_version=9)
    earlier = Totals(4, 5, 1, 2, lock_version=3)
    assert later.minus(earlier) == Totals(6, 15, 4, 13, lock_version=9)


# -- properties -----------------------------------------------------------------------------------------------

amounts = st.integers(1, 2**63 - 1)
entry_lives = st.lists(st.tuples(st.sampled_from(["debit", "credit"]), amounts,
                                 st.sampled_from(["pending", "posted", "pending->posted", "pending->archived"])),
                       max_size=12)


def fold(lives) -> Totals:
    """The account after every entry's life (created, then maybe posted or archived), via the domain's deltas."""
    t = Totals()
    for direction, amount, life in lives:
        t = t.plus(entry_created(direction, amount, "posted" if life == "posted" else "pending"))
        if life == "pending->posted":
            t = t.plus(entry_posted(direction, amount))
        elif life == "pending->archived":
            t = t.plus(entry_archived(direction, amount))
    return t


@given(entry_lives)
def test_the_deltas_add_up_to_the_sums_of_entries_by_final_status(lives):
    t = fold(lives)

    def total(direction, statuses):
        return sum(a for d, a, life in lives if d == direction and life.split("->")[-1] in statuses)

    assert t.pending_debits == total("debit", {"pending", "posted"})
    assert t.pending_credits == total("credit", {"pending", "posted"})
    assert t.posted_debits == total("debit", {"posted"})
    assert t.posted_credits == total("credit", {"posted"})
    assert t.lock_version == len(lives) + sum("->" in life for _, _, life in lives)


@given(entry_lives, st.sampled_from(["credit", "debit"]))
def test_available_never_exceeds_pending_or_posted(lives, normal):
    t = fold(lives)
    assert available_amount(t, normal) <= pending_amount(t, normal)
    assert available_amount(t, normal) <= posted_amount(t, normal)


@given(entry_lives)
def test_the_two_normal_balances_are_negatives_for_pending_and_posted(lives):
    t = fold(lives)
    assert pending_amount(t, "credit") == -pending_amount(t, "debit")
    assert posted_amount(t, "credit") == -posted_amount(t, "debit")


@given(entry_lives, st.sampled_from(["credit", "debit"]))
def test_every_view_amount_is_its_credits_and_debits_in_the_normal_direction(lives, normal):
    t = fold(lives)
    view = balances_view(t, normal, "EUR", 2)
    amounts_ = balance_amounts(t, normal)
    for name, balance in view.items():
        credits, debits = balance["credits"], balance["debits"]
        signed = credits - debits if normal == "credit" else debits - credits
        assert balance["amount"] == signed == amounts_[f"{name}_amount"]
