"""Balance conditions (balance locks): evaluated on an account's balances after a transaction applies.

This module is the reference semantics. The posting path evaluates the same rules inside the posting's own
database transaction (`ledger_check` in cell/store/migrations/0002_posting.sql), so that a lock is checked
under the row lock in one round trip; tests/unit pins this module, tests/property pins the SQL against an
independent model. Change both together.
"""

from __future__ import annotations

from cell.ledger.balances import balance_amounts
from cell.ledger.models import Condition, NormalBalance, Rejection, Totals

OPERATORS = ("gt", "gte", "lt", "lte", "eq")
BALANCE_FIELDS = ("pending_balance_amount", "posted_balance_amount", "available_balance_amount")


def compare(op: str, amount: int, target: int) -> bool:
    if op == "gt":
        return amount > target
    if op == "gte":
        return amount >= target
    if op == "lt":
        return amount < target
    if op == "lte":
        return amount <= target
    if op == "eq":
        return amount == target
    raise ValueError(f"unknown operator {op!r}")


def check_condition(condition: Condition, before: Totals, after: Totals,
                    normal_balance: NormalBalance) -> Rejection | None:
    """`before`: the account right before this transaction's effects; `after`: right after all of them."""
    if condition.lock_version is not None and condition.lock_version != before.lock_version:
        return Rejection("lock_version_mismatch",
                         f"lock_version is {before.lock_version}, not {condition.lock_version}")
    amounts = balance_amounts(after, normal_balance)
    for field, ops in condition.balances.items():
        for op, target in ops.items():
            if not compare(op, amounts[field], target):
                return Rejection("balance_lock_failed",
                                 f"{field} would be {amounts[field]}, which is not {op} {target}")
    return None

