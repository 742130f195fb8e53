"""Balance arithmetic, Modern Treasury's definitions: pending, posted and available balances from totals."""

from __future__ import annotations

from cell.ledger.models import NormalBalance, Totals


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

