"""Posting validation (stable rejection codes), the sync/async decision and reversal flipping."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cell.ledger.models import AMOUNT_MAX, Account, Condition, EntryRequest
from cell.ledger.models import Rejection
from cell.ledger.posting import (
    accounts_to_apply,
    derive_ledger,
    entry_needs_lock,
    reversal_entries,
    validate_partial_post,
    validate_posting,
)

LEDGER = "ledger-1"
OTHER_LEDGER = "ledger-2"
ENTRIES_MAX = 10

ACCOUNTS = {
    "usd-a": Account("usd-a", LEDGER, "USD", 2, "credit"),
    "usd-b": Account("usd-b", LEDGER, "USD", 2, "debit"),
    "eur-a": Account("eur-a", LEDGER, "EUR", 2, "credit"),
    "eur-b": Account("eur-b", LEDGER, "EUR", 2, "debit"),
    "jpy-a": Account("jpy-a", LEDGER, "JPY", 0, "debit"),
    "usd-elsewhere": Account("usd-elsewhere", OTHER_LEDGER, "USD", 2, "credit"),
}


def debit(account: str, amount: int, **kw) -> EntryRequest:
    return EntryRequest(account, "debit", amount, **kw)


def credit(account: str, amount: int, **kw) -> EntryRequest:
    return EntryRequest(account, "credit", amount, **kw)


def code_of(entries: list[EntryRequest], entries_max: int = ENTRIES_MAX) -> str | None:
    rejection = validate_posting(LEDGER, entries, ACCOUNTS, entries_max)
    return None if rejection is None else rejection.code


# -- validation codes ---------------------------------------------------------------------------------------


def test_a_balanced_two_entry_posting_is_accepted():
    assert validate_posting(LEDGER, [debit("usd-a", 100), credit("usd-b", 100)], ACCOUNTS, ENTRIES_MAX) is None


def test_no_entries_is_entries_required():
    assert code_of([]) == "entries_required"


def test_a_single_entry_is_entries_required():
    assert code_of([debit("usd-a", 100)]) == "entries_required"


def test_more_entries_than_the_limit_is_too_many_entries():
    entries = [debit("usd-a", 1), credit("usd-b", 1)] * 3  # 6 entries, balanced
    assert code_of(entries, entries_max=6) is None
    assert code_of(entries, entries_max=5) == "too_many_entries"


def test_too_many_entries_is_decided_before_looking_at_the_entries():
    # Unknown accounts and bad amounts: the size limit answers first (cheap check, bounded work).
    entries = [debit("nope", 0)] * 11
    assert code_of(entries) == "too_many_entries"


def test_zero_amount_is_invalid_amount():
    assert code_of([debit("usd-a", 0), credit("usd-b", 0)]) == "invalid_amount"


def test_negative_amount_is_invalid_amount():
    assert code_of([debit("usd-a", -5), credit("usd-b", -5)]) == "invalid_amount"


def test_amount_above_the_signed_64_bit_range_is_invalid_amount():
    assert code_of([debit("usd-a", AMOUNT_MAX + 1), credit("usd-b", AMOUNT_MAX + 1)]) == "invalid_amount"


def test_the_largest_amount_is_accepted():
    assert code_of([debit("usd-a", AMOUNT_MAX), credit("usd-b", AMOUNT_MAX)]) is None


def test_invalid_amount_names_the_entry():
    rejection = validate_posting(LEDGER, [debit("usd-a", 5), credit("usd-b", 0)], ACCOUNTS, ENTRIES_MAX)
    assert rejection is not None and rejection.code == "invalid_amount"
    assert "ledger_entries[1]" in rejection.detail


def test_unknown_account_is_ledger_account_not_found():
    rejection = validate_posting(LEDGER, [debit("usd-a", 5), credit("ghost", 5)], ACCOUNTS, ENTRIES_MAX)
    assert rejection is not None and rejection.code == "ledger_account_not_found"
    assert "ledger_entries[1]" in rejection.detail and "ghost" in rejection.detail


def test_account_of_another_ledger_is_ledger_account_in_other_ledger():
    rejection = validate_posting(LEDGER, [debit("usd-a", 5), credit("usd-elsewhere", 5)], ACCOUNTS, ENTRIES_MAX)
    assert rejection is not None and rejection.code == "ledger_account_in_other_ledger"
    assert "usd-elsewhere" in rejection.detail


def test_the_same_accounts_are_valid_in_their_own_ledger():
    accounts = {**ACCOUNTS, "usd-elsewhere-2": Account("usd-elsewhere-2", OTHER_LEDGER, "USD", 2, "debit")}
    entries = [debit("usd-elsewhere", 5), credit("usd-elsewhere-2", 5)]
    assert validate_posting(OTHER_LEDGER, entries, accounts, ENTRIES_MAX) is None
    assert validate_posting(LEDGER, entries, accounts, ENTRIES_MAX).code == "ledger_account_in_other_ledger"


def test_unequal_debits_and_credits_is_entries_must_balance():
    rejection = validate_posting(LEDGER, [debit("usd-a", 100), credit("usd-b", 99)], ACCOUNTS, ENTRIES_MAX)
    assert rejection is not None and rejection.code == "entries_must_balance"
    assert "USD" in rejection.detail and "100" in rejection.detail and "99" in rejection.detail


def test_only_debits_is_entries_must_balance():
    assert code_of([debit("usd-a", 100), debit("usd-b", 100)]) == "entries_must_balance"


def test_multi_currency_posting_balanced_per_currency_is_accepted():
    entries = [debit("usd-a", 100), credit("usd-b", 100), debit("eur-a", 7), credit("eur-b", 3), credit("eur-a", 4)]
    assert code_of(entries) is None


def test_one_currency_code_with_two_exponents_is_currency_exponent_mismatch():
    # 100 at exponent 2 is $1.00, 100 at exponent 3 is $0.100: equal numbers, unequal amounts.
    accounts = {**ACCOUNTS, "usd3-a": Account("usd3-a", LEDGER, "USD", 3, "credit"),
                "usd3-b": Account("usd3-b", LEDGER, "USD", 3, "debit")}
    for entries in ([debit("usd-a", 100), credit("usd3-a", 100)],
                    [debit("usd3-b", 100), credit("usd3-a", 100), debit("usd-a", 5), credit("usd-b", 5)],
                    [debit("eur-a", 5), credit("eur-b", 5), debit("usd-a", 100), credit("usd3-a", 100)]):
        rejection = validate_posting(LEDGER, entries, accounts, ENTRIES_MAX)
        assert rejection is not None and rejection.code == "currency_exponent_mismatch", entries
        assert "USD" in rejection.detail
    # One exponent per code is fine, whichever it is.
    assert validate_posting(LEDGER, [debit("usd3-b", 100), credit("usd3-a", 100)], accounts, ENTRIES_MAX) is None


def test_multi_currency_posting_must_balance_in_each_currency_not_in_total():
    # 100 USD out, 100 EUR in: equal sums overall, but neither currency balances.
    entries = [debit("usd-a", 100), credit("eur-a", 100)]
    assert code_of(entries) == "entries_must_balance"


def test_one_unbalanced_currency_among_balanced_ones_is_rejected_and_named():
    entries = [debit("usd-a", 100), credit("usd-b", 100), debit("eur-a", 50), credit("eur-b", 49),
               debit("jpy-a", 1), credit("jpy-a", 1)]
    rejection = validate_posting(LEDGER, entries, ACCOUNTS, ENTRIES_MAX)
    assert rejection is not None and rejection.code == "entries_must_balance"
    assert rejection.detail.startswith("EUR")


def test_balancing_is_per_currency_even_when_exponents_differ():
    # 1 JPY (exponent 0) does not balance 1 USD cent (exponent 2): currencies are never mixed.
    assert code_of([debit("jpy-a", 1), credit("usd-b", 1)]) == "entries_must_balance"


def test_an_entry_debiting_and_crediting_the_same_account_balances():
    assert code_of([debit("usd-a", 10), credit("usd-a", 10)]) is None


# -- the sync/async decision ----------------------------------------------------------------------------------


def test_a_plain_entry_needs_no_lock():
    assert not entry_needs_lock(debit("usd-a", 1))


def test_each_balance_condition_needs_a_lock():
    for field in ("pending_balance_amount", "posted_balance_amount", "available_balance_amount"):
        for op in ("gt", "gte", "lt", "lte", "eq"):
            assert entry_needs_lock(debit("usd-a", 1, condition=Condition({field: {op: 0}}))), (field, op)


def test_a_lock_version_of_zero_still_needs_a_lock():
    # 0 is a real lock_version (a fresh account), not "absent".
    assert entry_needs_lock(debit("usd-a", 1, condition=Condition(lock_version=0)))


def test_asking_for_resulting_balances_needs_a_lock():
    assert entry_needs_lock(debit("usd-a", 1, show_resulting_balances=True))


def test_hybrid_mode_applies_only_the_locked_accounts_sorted_and_once():
    locked = Condition({"available_balance_amount": {"gte": 0}})
    entries = [debit("usd-b", 5, condition=locked), credit("usd-a", 5), debit("eur-b", 1, show_resulting_balances=True),
               credit("eur-a", 1), debit("usd-b", 2, condition=locked), credit("usd-a", 2)]
    assert accounts_to_apply(entries, "hybrid") == ["eur-b", "usd-b"]


def test_hybrid_mode_without_locks_applies_nothing_now():
    assert accounts_to_apply([debit("usd-a", 5), credit("usd-b", 5)], "hybrid") == []


def test_sync_mode_applies_every_account_sorted_and_once():
    entries = [debit("usd-b", 5), credit("usd-a", 5), debit("usd-b", 1), credit("eur-a", 1)]
    assert accounts_to_apply(entries, "sync") == ["eur-a", "usd-a", "usd-b"]


# -- reversals ------------------------------------------------------------------------------------------------


def test_reversal_flips_every_direction_and_keeps_accounts_amounts_and_order():
    entries = [debit("usd-a", 100), credit("usd-b", 60), credit("eur-a", 40)]
    assert [(e.ledger_account_id, e.direction, e.amount) for e in reversal_entries(entries)] == [
        ("usd-a", "credit", 100), ("usd-b", "debit", 60), ("eur-a", "debit", 40)]


def test_reversal_carries_no_conditions_and_no_resulting_balance_request():
    entries = [debit("usd-a", 1, condition=Condition({"available_balance_amount": {"gte": 0}}, 3),
                     show_resulting_balances=True), credit("usd-b", 1)]
    for e in reversal_entries(entries):
        assert e.condition.is_empty() and not e.show_resulting_balances
        assert not entry_needs_lock(e)


# -- properties -----------------------------------------------------------------------------------------------

SAME_LEDGER = [a for a in ACCOUNTS.values() if a.ledger_id == LEDGER]
amounts = st.integers(1, AMOUNT_MAX // 4)


@st.composite
def balanced_postings(draw) -> list[EntryRequest]:
    """Per currency, a set of debits and a set of credits with equal sums; shuffled together."""
    entries: list[EntryRequest] = []
    for currency in draw(st.lists(st.sampled_from(["USD", "EUR", "JPY"]), min_size=1, max_size=3, unique=True)):
        pool = [a.id for a in SAME_LEDGER if a.currency == currency]
        parts = draw(st.lists(amounts, min_size=1, max_size=3))
        total = sum(parts)
        # Split the same total into a different number of credits.
        cuts = sorted(draw(st.sets(st.integers(1, total - 1), max_size=min(2, total - 1))) if total > 1 else [])
        other = [b - a for a, b in zip([0, *cuts], [*cuts, total])]
        debit_side, credit_side = draw(st.sampled_from([("debit", "credit"), ("credit", "debit")]))
        entries += [EntryRequest(draw(st.sampled_from(pool)), debit_side, p) for p in parts]
        entries += [EntryRequest(draw(st.sampled_from(pool)), credit_side, p) for p in other]
    return draw(st.permutations(entries))


@given(balanced_postings())
def test_every_balanced_posting_validates(entries):
    assert validate_posting(LEDGER, entries, ACCOUNTS, 100) is None


@given(balanced_postings())
def test_the_reversal_of_a_balanced_posting_is_balanced(entries):
    assert validate_posting(LEDGER, reversal_entries(entries), ACCOUNTS, 100) is None


@given(balanced_postings(), st.data())
def test_changing_one_amount_unbalances_the_posting(entries, data):
    i = data.draw(st.integers(0, len(entries) - 1))
    bump = data.draw(st.integers(1, 1000))
    changed = list(entries)
    changed[i] = EntryRequest(entries[i].ledger_account_id, entries[i].direction, entries[i].amount + bump)
    assert code_of(changed, 100) == "entries_must_balance"


@given(st.lists(st.builds(EntryRequest, st.sampled_from(list(ACCOUNTS)), st.sampled_from(["debit", "credit"]),
                          amounts), max_size=8))
def test_flipping_twice_is_the_identity(entries):
    assert reversal_entries(reversal_entries(entries)) == entries


@given(st.lists(st.tuples(st.sampled_from(list(ACCOUNTS)), st.booleans()), max_size=8),
       st.sampled_from(["hybrid", "sync"]))
def test_accounts_to_apply_is_sorted_unique_and_covers_every_locked_entry(spec, mode):
    entries = [EntryRequest(acc, "debit", 1, show_resulting_balances=lock) for acc, lock in spec]
    applied = accounts_to_apply(entries, mode)
    assert applied == sorted(set(applied))
    assert {e.ledger_account_id for e in entries if entry_needs_lock(e)} <= set(applied)
    if mode == "sync":
        assert set(applied) == {e.ledger_account_id for e in entries}
    else:
        assert set(applied) == {e.ledger_account_id for e in entries if entry_needs_lock(e)}


def test_a_transaction_without_ledger_id_is_in_its_accounts_ledger():
    assert derive_ledger([debit("usd-b", 5), credit("usd-a", 5)], ACCOUNTS) == LEDGER


def test_entries_in_two_ledgers_or_on_unknown_accounts_have_no_ledger():
    two = derive_ledger([debit("usd-b", 5), credit("usd-elsewhere", 5)], ACCOUNTS)
    assert isinstance(two, Rejection) and two.code == "entries_in_multiple_ledgers"
    unknown = derive_ledger([debit("usd-b", 5), credit("nope", 5)], ACCOUNTS)
    assert isinstance(unknown, Rejection) and unknown.code == "ledger_account_not_found"


def test_a_partial_post_has_one_no_larger_entry_per_pending_entry():
    pending = [debit("usd-b", 10), credit("usd-a", 7), credit("usd-a", 3)]
    assert validate_partial_post(pending, [debit("usd-b", 9), credit("usd-a", 3), credit("usd-a", 6)]) is None
    assert validate_partial_post(pending, [debit("usd-b", 9), credit("usd-a", 8), credit("usd-a", 1)]).code \
        == "partial_post_entries_mismatch"
    assert validate_partial_post(pending, [debit("usd-b", 9), credit("usd-a", 9)]).code \
        == "partial_post_entries_mismatch"
    assert validate_partial_post(pending, [credit("usd-b", 9), credit("usd-a", 3), credit("usd-a", 6)]) is not None
