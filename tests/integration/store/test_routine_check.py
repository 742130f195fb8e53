"""ledger_check, the balance locks: every operator, every balance, lock_version, on the resulting balances,
raising LG001 (balance_lock_failed) or LG002 (lock_version_mismatch) with a JSON detail."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from routine_helpers import new_account, raised
from hypothesis import given, settings
from hypothesis import strategies as st

OPS = ("gt", "gte", "lt", "lte", "eq")
FIELDS = ("pending_balance_amount", "posted_balance_amount", "available_balance_amount")
CHECK = "SELECT ledger_check($1::jsonb, $2::uuid[])"


async def account_after(conn, normal="credit", *, totals=(300, 1000, 300, 1000), lock_version_before=4):
    """An account right after a transaction's one entry: `totals` (pending debits, pending credits, posted
    debits, posted credits) at lock_version_before + 1, the entry's applied effect at that version.
    Returns (account id, the entry's id)."""
    pd, pc, od, oc = totals
    account = await new_account(conn, normal, pending_debits=pd, pending_credits=pc, posted_debits=od,
                                posted_credits=oc, lock_version=lock_version_before + 1)
    entry = uuid.uuid4()
    await conn.execute(
        "INSERT INTO balance_effects (tenant_id, account_id, entry_id, kind, d_pending_debits, d_pending_credits,"
        " d_posted_debits, d_posted_credits, effective_at, applied_at, lock_version, pending_debits,"
        " pending_credits, posted_debits, posted_credits)"
        " VALUES ($1, $2, $3, 'entry', 0, 0, 0, 0, $4, now(), $5, $6, $7, $8, $9)",
        account.tenant, account.id, entry, datetime.now(UTC), lock_version_before + 1, pd, pc, od, oc)
    return account.id, entry


async def check(conn, account, entry, balances=None, lock_version=None):
    """None when the lock holds, else the error ledger_check raised."""
    condition = {"account_id": str(account), **(balances or {})}
    if lock_version is not None:
        condition["lock_version"] = lock_version
    return await raised(conn, CHECK, [condition], [entry])


def code(error) -> str | None:
    return None if error is None else error.sqlstate


# The account before and after a transaction that debits 300 from a credit-normal account holding 1000:
# lock_version 4 before, 5 after; every balance is 700 after.
@pytest.fixture
async def after(db):
    return await account_after(db)


async def check_after(db, after, balances=None, lock_version=None):
    return await check(db, *after, balances, lock_version)


@pytest.mark.parametrize(("op", "below", "equal", "above"), [
    ("gt", False, False, True),
    ("gte", False, True, True),
    ("lt", True, False, False),
    ("lte", True, True, False),
    ("eq", False, True, False),
])
async def test_each_operator_compares_amount_to_target(db, op, below, equal, above):
    for amount, target, holds in ((9, 10, below), (10, 10, equal), (11, 10, above),
                                  (-11, -10, below)):  # negative balances compare as numbers
        totals = (0, amount, 0, amount) if amount >= 0 else (-amount, 0, -amount, 0)
        account, entry = await account_after(db, totals=totals)
        error = await check(db, account, entry, {"posted_balance_amount": {op: target}})
        assert (error is None) is holds, (op, amount, target)


async def test_an_unknown_operator_never_passes(db, after):
    assert code(await check_after(db, after, {"posted_balance_amount": {"ne": 1}})) == "LG001"
    assert code(await check_after(db, after, {"posted_balance_amount": {"ne": 700}})) == "LG001"


async def test_no_condition_always_passes(db, after):
    assert await check_after(db, after) is None
    assert await raised(db, CHECK, [], [after[1]]) is None


async def test_conditions_are_checked_on_the_resulting_balances_not_the_starting_ones(db, after):
    assert await check_after(db, after, {"available_balance_amount": {"eq": 700}}) is None
    error = await check_after(db, after, {"available_balance_amount": {"eq": 1000}})
    assert code(error) == "LG001"
    assert json.loads(error.detail) == {"ledger_account_id": str(after[0]), "balance": "available_balance_amount",
                                        "operator": "eq", "value": 1000, "resulting_amount": 700}


@pytest.mark.parametrize("field", FIELDS)
async def test_each_balance_field_and_operator(db, after, field):
    expect = {"gt": (699, 700), "gte": (700, 701), "lt": (701, 700), "lte": (700, 699), "eq": (700, 701)}
    for op, (passing, failing) in expect.items():
        assert await check_after(db, after, {field: {op: passing}}) is None, (field, op, passing)
        error = await check_after(db, after, {field: {op: failing}})
        assert code(error) == "LG001", (field, op, failing)
        assert json.loads(error.detail)["balance"] == field and json.loads(error.detail)["operator"] == op


async def test_each_field_reads_its_own_balance(db):
    # A pending debit of 300: pending and available drop, posted does not.
    after = await account_after(db, totals=(300, 1000, 0, 1000))
    assert await check(db, *after, {"posted_balance_amount": {"eq": 1000}}) is None
    assert await check(db, *after, {"pending_balance_amount": {"eq": 700}}) is None
    assert await check(db, *after, {"available_balance_amount": {"eq": 700}}) is None
    assert code(await check(db, *after, {"posted_balance_amount": {"eq": 700}})) == "LG001"


async def test_debit_normal_orientation(db):
    # A debit-normal cash account with 1000 debited in and 300 credited out: 700 left.
    after = await account_after(db, "debit", totals=(1000, 300, 1000, 300), lock_version_before=1)
    assert await check(db, *after, {"available_balance_amount": {"gte": 700}}) is None
    assert code(await check(db, *after, {"available_balance_amount": {"gt": 700}})) == "LG001"
    # The same totals read as credit-normal are -700.
    after = await account_after(db, "credit", totals=(1000, 300, 1000, 300), lock_version_before=1)
    assert await check(db, *after, {"posted_balance_amount": {"eq": -700}}) is None


async def test_every_operator_on_a_field_must_hold(db, after):
    assert await check_after(db, after, {"available_balance_amount": {"gte": 0, "lte": 700}}) is None
    assert code(await check_after(db, after, {"available_balance_amount": {"gte": 0, "lt": 700}})) == "LG001"
    assert code(await check_after(db, after, {"available_balance_amount": {"gte": 701, "lt": 1000}})) == "LG001"


async def test_every_field_must_hold(db, after):
    assert await check_after(db, after, {"available_balance_amount": {"gte": 0},
                                         "posted_balance_amount": {"eq": 700}}) is None
    assert code(await check_after(db, after, {"available_balance_amount": {"gte": 0},
                                              "posted_balance_amount": {"eq": 1000}})) == "LG001"


async def test_every_account_checked_must_hold(db, after):
    other = await account_after(db, totals=(0, 50, 0, 50))
    ok = {"account_id": str(after[0]), "posted_balance_amount": {"eq": 700}}
    assert await raised(db, CHECK, [ok, {"account_id": str(other[0]), "posted_balance_amount": {"eq": 50}}],
                        [after[1], other[1]]) is None
    error = await raised(db, CHECK, [ok, {"account_id": str(other[0]), "posted_balance_amount": {"gt": 50}}],
                         [after[1], other[1]])
    assert code(error) == "LG001" and json.loads(error.detail)["ledger_account_id"] == str(other[0])


async def test_lock_version_must_equal_the_version_before_the_transaction(db, after):
    assert await check_after(db, after, lock_version=4) is None
    error = await check_after(db, after, lock_version=5)  # the version after is not what the caller saw
    assert code(error) == "LG002"
    assert json.loads(error.detail) == {"ledger_account_id": str(after[0]), "expected": 5, "actual": 4}
    error = await check_after(db, after, lock_version=3)
    assert code(error) == "LG002" and json.loads(error.detail)["actual"] == 4


async def test_lock_version_zero_matches_a_fresh_account(db, after):
    fresh = await account_after(db, totals=(0, 5, 0, 5), lock_version_before=0)
    assert await check(db, *fresh, lock_version=0) is None
    assert code(await check_after(db, after, lock_version=0)) == "LG002"


async def test_a_stale_lock_version_is_reported_before_any_balance_failure(db, after):
    error = await check_after(db, after, {"available_balance_amount": {"gt": 10**9}}, lock_version=1)
    assert code(error) == "LG002"


async def test_a_matching_lock_version_still_checks_balances(db, after):
    assert await check_after(db, after, {"available_balance_amount": {"gte": 0}}, lock_version=4) is None
    assert code(await check_after(db, after, {"available_balance_amount": {"lt": 0}}, lock_version=4)) == "LG001"


# -- properties -----------------------------------------------------------------------------------------------

ints = st.integers(-(2**63), 2**63 - 1)
totals = st.tuples(*[st.integers(0, 2**64)] * 4)
conditions = st.dictionaries(st.sampled_from(FIELDS), st.dictionaries(st.sampled_from(OPS), ints, min_size=1),
                             max_size=3)
TRUTH = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__, "eq": int.__eq__}


def amounts_of(t, normal) -> dict[str, int]:
    """The model: Modern Treasury's definitions, written out independently of the SQL."""
    pd, pc, od, oc = t
    if normal == "credit":
        return {"pending_balance_amount": pc - pd, "posted_balance_amount": oc - od,
                "available_balance_amount": oc - pd}
    return {"pending_balance_amount": pd - pc, "posted_balance_amount": od - oc, "available_balance_amount": od - pc}


def set_after(sync_db, normal, t) -> tuple[uuid.UUID, uuid.UUID]:
    """Fresh rows per example (all rolled back with sync_db's transaction)."""
    return sync_db.run(account_after(sync_db.conn, normal, totals=t))


@settings(max_examples=60, deadline=None)
@given(conditions, totals, st.sampled_from(["credit", "debit"]))
def test_a_condition_passes_exactly_when_every_comparison_holds(sync_db, balances, t, normal):
    amounts = amounts_of(t, normal)
    holds = all(TRUTH[op](amounts[field], target) for field, ops in balances.items() for op, target in ops.items())
    account, entry = set_after(sync_db, normal, t)
    error = sync_db.run(check(sync_db.conn, account, entry, balances))
    assert (error is None) == holds
    if error is not None:
        assert error.sqlstate == "LG001"
        detail = json.loads(error.detail)
        assert detail["resulting_amount"] == amounts[detail["balance"]]
        assert not TRUTH[detail["operator"]](detail["resulting_amount"], detail["value"])


@settings(max_examples=40, deadline=None)
@given(ints, ints)
def test_operators_partition_the_line(sync_db, amount, target):
    totals = (0, amount, 0, amount) if amount >= 0 else (-amount, 0, -amount, 0)
    account, entry = set_after(sync_db, "credit", totals)
    holds = {op: sync_db.run(check(sync_db.conn, account, entry, {"posted_balance_amount": {op: target}})) is None
             for op in OPS}
    assert holds["lt"] + holds["eq"] + holds["gt"] == 1
    assert holds["lte"] == (holds["lt"] or holds["eq"])
    assert holds["gte"] == (holds["gt"] or holds["eq"])
