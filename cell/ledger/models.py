"""Domain values of the ledger: accounts as the posting sees them, entries, balance totals, rejections."""

from __future__ import annotations

from typing import Literal

import msgspec

Direction = Literal["credit", "debit"]
NormalBalance = Literal["credit", "debit"]
Status = Literal["pending", "posted", "archived"]
Operator = Literal["gt", "gte", "lt", "lte", "eq"]
BalanceName = Literal["pending_balance_amount", "posted_balance_amount", "available_balance_amount"]

AMOUNT_MAX = 2**63 - 1  # amounts are signed 64-bit integers of minor units; balances never overflow (numeric)


class Account(msgspec.Struct, frozen=True):
    """The immutable facts about an account that posting validation needs."""

    id: str
    ledger_id: str
    currency: str
    currency_exponent: int
    normal_balance: NormalBalance


class Condition(msgspec.Struct, frozen=True):
    """A balance lock of one entry: `available_balance_amount: {gte: 0}` and friends, and `lock_version`."""

    balances: dict[str, dict[str, int]] = {}
    lock_version: int | None = None

    def is_empty(self) -> bool:
        return not self.balances and self.lock_version is None


class EntryRequest(msgspec.Struct, frozen=True):
    ledger_account_id: str
    direction: Direction
    amount: int
    condition: Condition = Condition()
    show_resulting_balances: bool = False


class Totals(msgspec.Struct, frozen=True):
    """An account's four running sums and its lock version: what every balance is computed from."""

    pending_debits: int = 0
    pending_credits: int = 0
    posted_debits: int = 0
    posted_credits: int = 0
    lock_version: int = 0

    def plus(self, delta: "Delta") -> "Totals":
        return Totals(
            self.pending_debits + delta.pending_debits,
            self.pending_credits + delta.pending_credits,
            self.posted_debits + delta.posted_debits,
            self.posted_credits + delta.posted_credits,
            self.lock_version + 1,
        )

    def minus(self, other: "Totals") -> "Totals":
        return Totals(
            self.pending_debits - other.pending_debits,
            self.pending_credits - other.pending_credits,
            self.posted_debits - other.posted_debits,
            self.posted_credits - other.posted_credits,
            self.lock_version,
        )


class Delta(msgspec.Struct, frozen=True):
    """One balance effect: what an entry written, posted or archived does to its account."""

    pending_debits: int = 0
    pending_credits: int = 0
    posted_debits: int = 0
    posted_credits: int = 0


class Rejection(msgspec.Struct, frozen=True):
    """An expected refusal, as a value with a stable code (never an exception thrown from the domain)."""

    code: str
    detail: str
