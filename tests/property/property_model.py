"""The property tests' shared model arithmetic: balances recomputed from first principles (Modern Treasury's
definitions), never with cell code, so that a bug there cannot hide in the model too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st


@dataclass(frozen=True)
class Sums:
    pending_debits: int = 0
    pending_credits: int = 0
    posted_debits: int = 0
    posted_credits: int = 0

    def __add__(self, o: Sums) -> Sums:
        return Sums(self.pending_debits + o.pending_debits, self.pending_credits + o.pending_credits,
                    self.posted_debits + o.posted_debits, self.posted_credits + o.posted_credits)


def sums(pairs) -> Sums:
    """The sums of (entry, its transaction's status) pairs: pending balances count pending and posted entries,
    posted balances posted ones; archived ones count nowhere."""
    pd = pc = od = oc = 0
    for entry, status in pairs:
        if status not in ("pending", "posted"):
            continue
        if entry.direction == "debit":
            pd += entry.amount
            od += entry.amount if status == "posted" else 0
        else:
            pc += entry.amount
            oc += entry.amount if status == "posted" else 0
    return Sums(pd, pc, od, oc)


def amounts(s: Sums, normal: str) -> dict[str, int]:
    if normal == "credit":
        return {"pending_balance_amount": s.pending_credits - s.pending_debits,
                "posted_balance_amount": s.posted_credits - s.posted_debits,
                "available_balance_amount": s.posted_credits - s.pending_debits}
    return {"pending_balance_amount": s.pending_debits - s.pending_credits,
            "posted_balance_amount": s.posted_debits - s.posted_credits,
            "available_balance_amount": s.posted_debits - s.pending_credits}


def view(s: Sums, a) -> dict:
    """The `balances` object a user should see for these sums on account `a` (its normal balance, currency and
    exponent)."""
    if a.normal == "credit":
        avail_credits, avail_debits = s.posted_credits, s.pending_debits
    else:
        avail_credits, avail_debits = s.pending_credits, s.posted_debits
    amount = amounts(s, a.normal)

    def one(credits, debits, name):
        return {"credits": credits, "debits": debits, "amount": amount[name], "currency": a.currency,
                "currency_exponent": a.exponent, "credits_string": str(credits), "debits_string": str(debits),
                "amount_string": str(amount[name])}

    return {"pending_balance": one(s.pending_credits, s.pending_debits, "pending_balance_amount"),
            "posted_balance": one(s.posted_credits, s.posted_debits, "posted_balance_amount"),
            "available_balance": one(avail_credits, avail_debits, "available_balance_amount")}


def account_view(s: Sums, a, lower: datetime | None = None, upper: datetime | None = None) -> dict:
    """An account's `balances`: `view`'s three, and the range of effective time they were read over (Modern
    Treasury's effective_at_lower_bound/_upper_bound, in UTC; null when not read over one)."""
    return view(s, a) | {"effective_at_lower_bound": None if lower is None else rfc3339(lower),
                         "effective_at_upper_bound": None if upper is None else rfc3339(upper)}


def flip(direction: str) -> str:
    return "credit" if direction == "debit" else "debit"


def rfc3339(t: datetime, offset: timedelta = timedelta(0)) -> str:
    return t.astimezone(timezone(offset)).isoformat().replace("+00:00", "Z")


AMOUNT_MAX = 2**63 - 1


def draw_legs(draw, accounts: list, ledger: int | None = None) -> tuple[int, list[tuple]]:
    """A balanced posting's legs: a ledger (drawn unless given), then per currency (one or two) debits and credits
    of equal sums on that ledger's accounts of the currency, in any order. Returns (ledger, [(account, direction,
    amount)])."""
    if ledger is None:
        ledger = draw(st.sampled_from([0, 1]), label="ledger")
    by_currency: dict[str, list] = {}
    for a in accounts:
        if a.ledger == ledger:
            by_currency.setdefault(a.currency, []).append(a)
    currencies = draw(st.lists(st.sampled_from(sorted(by_currency)), min_size=1, max_size=2, unique=True))
    legs: list[tuple] = []
    for currency in currencies:
        pool = st.sampled_from(by_currency[currency])
        # Now and then the largest amount: balances then reach the end of the signed 64-bit range.
        debits = draw(st.lists(st.integers(1, 500), min_size=1, max_size=2) | st.just([AMOUNT_MAX]))
        total = sum(debits)
        cut = draw(st.integers(1, total - 1)) if total > 1 and draw(st.booleans()) else None
        credits = [total] if cut is None else [cut, total - cut]
        legs += [(draw(pool), "debit", x) for x in debits] + [(draw(pool), "credit", x) for x in credits]
    return ledger, draw(st.permutations(legs), label="legs")


def raised(legs: list[tuple], k: int) -> list[tuple]:
    """The same legs with every amount k times (still balanced), or as they are if one would pass 2^63 - 1."""
    if any(x * k > AMOUNT_MAX for _, _, x in legs):
        return legs
    return [(a, d, x * k) for a, d, x in legs]


# -- the books and balance locks both posting machines draw ------------------------------------------------

# Two ledgers; ledger 0 holds USD and EUR accounts, ledger 1 USD only (same currency, separate books).
LAYOUT = [(0, "USD"), (0, "USD"), (0, "USD"), (0, "EUR"), (0, "EUR"), (1, "USD"), (1, "USD")]
LOCK_FIELDS = ("pending_balance_amount", "posted_balance_amount", "available_balance_amount")
OPS = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b,
       "lte": lambda a, b: a <= b, "eq": lambda a, b: a == b}


def draw_balance_lock(draw, projected: dict[str, int], stale: dict[str, int] | None = None) -> tuple[str, dict, bool]:
    """A balance lock on one of an entry's account balances: (field, {operator: bound}, whether it holds on
    `projected`, the account's balances once the posting is written). The bound is drawn around the projected
    balance, or, given `stale` (balances a lock checked too early would see), around either."""
    name = draw(st.sampled_from(LOCK_FIELDS))
    op = draw(st.sampled_from(sorted(OPS)))
    result = projected[name]
    base = result if stale is None else draw(st.sampled_from([result, stale[name]]))
    target = base + draw(st.one_of(st.sampled_from([-1, 0, 0, 1]), st.integers(-1000, 1000)))
    target = max(-(2**63), min(2**63 - 1, target))  # a lock's bound is a signed 64-bit integer
    return name, {op: target}, OPS[op](result, target)


# -- the status rules both machines check (the same API contract, against either model) -----------------------

def draw_pending(draw, txns: list, pending_weight: int):
    """A transaction: a pending one `pending_weight` times in `pending_weight + 1`, else any (a final one's changes
    must be refused)."""
    pending = [t for t in txns if t.status == "pending"]
    return draw(st.sampled_from(pending) if pending and draw(st.integers(0, pending_weight)) else
                st.sampled_from(txns), label="txn")


def draw_transition(draw, txns: list, pending_weight: int) -> tuple:
    """A settle's (transaction, target status): draw_pending's transaction, whose final states then draw a
    transition that must be refused."""
    txn = draw_pending(draw, txns, pending_weight)
    to = draw(st.sampled_from(["posted", "archived"] if txn.status == "pending" else
                              sorted({"pending", "posted", "archived"} - {txn.status})), label="to")
    return txn, to


def refused(response, code: str) -> None:
    assert response.status_code == 422 and response.json()["code"] == code, response.text


def overflows(after: Sums) -> bool:
    """Whether an account's balances after a posting leave the signed 64-bit range: the posting is refused
    (balance_overflow). Pending counts pending and posted entries, so it bounds the posted sums too."""
    return max(after.pending_debits, after.pending_credits) > AMOUNT_MAX


def freed_by_archiving(txn):
    """The original whose pending reversal `txn` was just archived, no longer reversed (an archived reversal reverses
    nothing: the original can be reversed again, cell/store/routines/transition.sql), or None."""
    original = txn.reverses if txn.status == "archived" else None
    if original is not None:
        original.reversed_by = txn.reverses = None
    return original


def reversal_refused(response, txn, overflow: bool) -> bool:
    """Whether the reversal of `txn` had to be refused (checked either way): only an unreversed posted
    transaction can be reversed, and only when no balance leaves the signed 64-bit range; the reversal then
    links back to it."""
    if txn.status != "posted":
        refused(response, "invalid_status_transition")
        return True
    if txn.reversed_by is not None:
        refused(response, "already_reversed")
        return True
    if overflow:
        refused(response, "balance_overflow")
        return True
    assert response.status_code == 201, response.text
    assert response.json()["reverses_ledger_transaction_id"] == txn.id
    return False
