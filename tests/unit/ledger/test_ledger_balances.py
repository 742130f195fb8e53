"""Balance arithmetic (Modern Treasury's definitions) for both normal balances, as the read side computes it.

The write side's formulas and deltas are SQL routines, tested against PostgreSQL in tests/integration/store."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cell.ledger.balances import (
    available_amount,
    balance_amounts,
    balances_view,
    pending_amount,
    posted_amount,
)
from cell.ledger.models import Totals

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
    # Funded with 100 posted credits; then a pending credit of 40 in, or a pending debit of 30 out.
    incoming = Totals(pending_credits=140, posted_credits=100)
    outgoing = Totals(pending_debits=30, pending_credits=100, posted_credits=100)
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


# -- totals ---------------------------------------------------------------------------------------------------


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
    """The account after every entry's life (created, then maybe posted or archived): pending holds the entries
    pending or posted at the end, posted the posted ones."""

    def total(direction, statuses):
        return sum(a for d, a, life in lives if d == direction and life.split("->")[-1] in statuses)

    return Totals(total("debit", {"pending", "posted"}), total("credit", {"pending", "posted"}),
                  total("debit", {"posted"}), total("credit", {"posted"}))


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
