"""Balance arithmetic, Modern Treasury's definitions: pending, posted and available balances from totals.

`entry_created/posted/archived` are the reference for the balance effects that `ledger_effects_of` (SQL,
0002_posting.sql) writes inside the posting transaction; the two must agree (tests/unit, tests/property).
"""

from __future__ import annotations

from cell.ledger.models import Delta, Direction, NormalBalance, Status, Totals


def signed(normal_balance: NormalBalance, debits: int, credits: int) -> int:
    return credits - debits if normal_balance == "credit" else debits - credits


def pending_amount(t: Totals, normal_balance: NormalBalance) -> int:
    return signed(normal_balance, t.pending_debits, t.pending_credits)


def posted_amount(t: Totals, normal_balance: NormalBalance) -> int:
    return signed(normal_balance, t.posted_debits, t.posted_credits)


def available_amount(t: Totals, normal_balance: NormalBalance) -> int:
    # Posted money in, minus everything (pending or posted) already promised out.
    if normal_balance == "credit":
        return t.posted_credits - t.pending_debits
    return t.posted_debits - t.pending_credits


def balance_amounts(t: Totals, normal_balance: NormalBalance) -> dict[str, int]:
    return {
        "pending_balance_amount": pending_amount(t, normal_balance),
        "posted_balance_amount": posted_amount(t, normal_balance),
        "available_balance_amount": available_amount(t, normal_balance),
    }


def balances_view(t: Totals, normal_balance: NormalBalance, currency: str, exponent: int) -> dict[str, dict]:
    """The `balances` object of the API: each balance as {credits, debits, amount, currency, currency_exponent}."""

    def one(debits: int, credits: int, amount: int) -> dict:
        return {"credits": credits, "debits": debits, "amount": amount,
                "currency": currency, "currency_exponent": exponent}

    if normal_balance == "credit":
        avail_debits, avail_credits = t.pending_debits, t.posted_credits
    else:
        avail_debits, avail_credits = t.posted_debits, t.pending_credits
    return {
        "pending_balance": one(t.pending_debits, t.pending_credits, pending_amount(t, normal_balance)),
        "posted_balance": one(t.posted_debits, t.posted_credits, posted_amount(t, normal_balance)),
        "available_balance": one(avail_debits, avail_credits, available_amount(t, normal_balance)),
    }


def _side(direction: Direction, amount: int) -> tuple[int, int]:
    return (amount, 0) if direction == "debit" else (0, amount)


def entry_created(direction: Direction, amount: int, status: Status) -> Delta:
    debit, credit = _side(direction, amount)
    if status == "posted":
        return Delta(debit, credit, debit, credit)
    return Delta(debit, credit, 0, 0)


def entry_posted(direction: Direction, amount: int) -> Delta:
    debit, credit = _side(direction, amount)
    return Delta(0, 0, debit, credit)


def entry_archived(direction: Direction, amount: int) -> Delta:
    debit, credit = _side(direction, amount)
    return Delta(-debit, -credit, 0, 0)
