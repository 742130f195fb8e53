"""Balance conditions (balance locks): every operator, every balance, lock_version, on the resulting balances."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cell.ledger.balances import balance_amounts
from cell.ledger.conditions import check_condition, compare
from cell.ledger.models import Condition, Totals

OPS = ("gt", "gte", "lt", "lte", "eq")


@pytest.mark.parametrize(("op", "below", "equal", "above"), [
    ("gt", False, False, True),
    ("gte", False, True, True),
    ("lt", True, False, False),
    ("lte", True, True, False),
    ("eq", False, True, False),
])
def test_each_operator_compares_amount_to_target(op, below, equal, above):
    assert compare(op, 9, 10) is below
    assert compare(op, 10, 10) is equal
    assert compare(op, 11, 10) is above
    assert compare(op, -11, -10) is below  # negative balances compare as numbers


def test_an_unknown_operator_is_a_programmer_error():
    with pytest.raises(ValueError):
        compare("ne", 1, 2)


# The account before and after a transaction that debits 300 from a credit-normal account holding 1000.
BEFORE = Totals(pending_debits=0, pending_credits=1000, posted_debits=0, posted_credits=1000, lock_version=4)
AFTER = Totals(pending_debits=300, pending_credits=1000, posted_debits=300, posted_credits=1000, lock_version=5)


def check(balances=None, lock_version=None, normal="credit", before=BEFORE, after=AFTER):
    return check_condition(Condition(balances or {}, lock_version), before, after, normal)


def test_no_condition_always_passes():
    assert check() is None


def test_conditions_are_checked_on_the_resulting_balances_not_the_starting_ones():
    assert check({"available_balance_amount": {"eq": 700}}) is None
    rejection = check({"available_balance_amount": {"eq": 1000}})
    assert rejection is not None and rejection.code == "balance_lock_failed"
    assert "available_balance_amount" in rejection.detail and "700" in rejection.detail


@pytest.mark.parametrize("field", ["pending_balance_amount", "posted_balance_amount", "available_balance_amount"])
def test_each_balance_field_and_operator(field):
    # After the debit, every balance of this account is 700.
    expect = {"gt": (699, 700), "gte": (700, 701), "lt": (701, 700), "lte": (700, 699), "eq": (700, 701)}
    for op, (passing, failing) in expect.items():
        assert check({field: {op: passing}}) is None, (field, op, passing)
        rejection = check({field: {op: failing}})
        assert rejection is not None and rejection.code == "balance_lock_failed", (field, op, failing)


def test_each_field_reads_its_own_balance():
    # A pending debit of 300: pending and available drop, posted does not.
    after = Totals(pending_debits=300, pending_credits=1000, posted_debits=0, posted_credits=1000, lock_version=5)
    assert check({"posted_balance_amount": {"eq": 1000}}, after=after) is None
    assert check({"pending_balance_amount": {"eq": 700}}, after=after) is None
    assert check({"available_balance_amount": {"eq": 700}}, after=after) is None
    assert check({"posted_balance_amount": {"eq": 700}}, after=after).code == "balance_lock_failed"


def test_debit_normal_orientation():
    # A debit-normal cash account with 1000 debited in and 300 credited out: 700 left.
    before = Totals(1000, 0, 1000, 0, 1)
    after = Totals(1000, 300, 1000, 300, 2)
    assert check({"available_balance_amount": {"gte": 700}}, normal="debit", before=before, after=after) is None
    assert check({"available_balance_amount": {"gt": 700}}, normal="debit", before=before,
                 after=after).code == "balance_lock_failed"
    # The same totals read as credit-normal are -700.
    assert check({"posted_balance_amount": {"eq": -700}}, normal="credit", before=before, after=after) is None


def test_every_operator_on_a_field_must_hold():
    assert check({"available_balance_amount": {"gte": 0, "lte": 700}}) is None
    assert check({"available_balance_amount": {"gte": 0, "lt": 700}}).code == "balance_lock_failed"
    assert check({"available_balance_amount": {"gte": 701, "lt": 1000}}).code == "balance_lock_failed"


def test_every_field_must_hold():
    assert check({"available_balance_amount": {"gte": 0}, "posted_balance_amount": {"eq": 700}}) is None
    assert check({"available_balance_amount": {"gte": 0},
                  "posted_balance_amount": {"eq": 1000}}).code == "balance_lock_failed"


def test_lock_version_must_equal_the_version_before_the_transaction():
    assert check(lock_version=4) is None
    rejection = check(lock_version=5)  # the version after is not what the caller saw
    assert rejection is not None and rejection.code == "lock_version_mismatch"
    assert "4" in rejection.detail
    assert check(lock_version=3).code == "lock_version_mismatch"


def test_lock_version_zero_matches_a_fresh_account():
    assert check(lock_version=0, before=Totals(), after=Totals(0, 5, 0, 5, 1)) is None
    assert check(lock_version=0).code == "lock_version_mismatch"


def test_a_stale_lock_version_is_reported_before_any_balance_failure():
    rejection = check({"available_balance_amount": {"gt": 10**9}}, lock_version=1)
    assert rejection.code == "lock_version_mismatch"


def test_a_matching_lock_version_still_checks_balances():
    assert check({"available_balance_amount": {"gte": 0}}, lock_version=4) is None
    assert check({"available_balance_amount": {"lt": 0}}, lock_version=4).code == "balance_lock_failed"


# -- properties -----------------------------------------------------------------------------------------------

ints = st.integers(-(2**63), 2**63 - 1)
totals = st.builds(Totals, st.integers(0, 2**64), st.integers(0, 2**64), st.integers(0, 2**64),
                   st.integers(0, 2**64), st.integers(0, 2**40))
conditions = st.dictionaries(
    st.sampled_from(["pending_balance_amount", "posted_balance_amount", "available_balance_amount"]),
    st.dictionaries(st.sampled_from(OPS), ints, min_size=1), max_size=3)


@given(conditions, totals, totals, st.sampled_from(["credit", "debit"]))
def test_a_condition_passes_exactly_when_every_comparison_holds(balances, before, after, normal):
    amounts = balance_amounts(after, normal)
    truth = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__, "eq": int.__eq__}
    holds = all(truth[op](amounts[field], target) for field, ops in balances.items() for op, target in ops.items())
    rejection = check_condition(Condition(balances), before, after, normal)
    assert (rejection is None) == holds
    if rejection is not None:
        assert rejection.code == "balance_lock_failed"


@given(ints, ints)
def test_operators_partition_the_line(amount, target):
    assert compare("lt", amount, target) + compare("eq", amount, target) + compare("gt", amount, target) == 1
    assert compare("lte", amount, target) == (compare("lt", amount, target) or compare("eq", amount, target))
    assert compare("gte", amount, target) == (compare("gt", amount, target) or compare("eq", amount, target))
