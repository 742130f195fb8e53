"""Posting validation and the sync/async decision: pure, given the request and the accounts it names."""

from __future__ import annotations

from collections import defaultdict

from cell.ledger.models import AMOUNT_MAX, Account, EntryRequest, Rejection

PostingMode = str  # "hybrid" | "sync"


def validate_posting(ledger_id: str, entries: list[EntryRequest], accounts: dict[str, Account],
                     entries_max: int) -> Rejection | None:
    """Every rule a posting must meet before anything is written. Returns the first rejection."""
    if not entries:
        return Rejection("entries_required", "a ledger transaction needs at least two entries")
    if len(entries) > entries_max:
        return Rejection("too_many_entries", f"at most {entries_max} entries per transaction")
    if len(entries) < 2:
        return Rejection("entries_required", "a ledger transaction needs at least two entries")
    # 100 at exponent 2 ($1.00) and 100 at exponent 3 ($0.100) are different amounts: a currency code may appear
    # with one exponent only, so that sums per code are sums of like units.
    exponents: dict[str, int] = {}
    net: dict[str, int] = {}  # debits less credits, per currency
    for i, entry in enumerate(entries):
        amount = entry.amount
        if not 0 < amount <= AMOUNT_MAX:
            return Rejection("invalid_amount", f"ledger_entries[{i}].amount must be between 1 and {AMOUNT_MAX}")
        account = accounts.get(entry.ledger_account_id)
        if account is None:
            return Rejection("ledger_account_not_found",
                             f"ledger_entries[{i}].ledger_account_id {entry.ledger_account_id} does not exist")
        if account.ledger_id != ledger_id:
            return Rejection("ledger_account_in_other_ledger",
                             f"ledger_entries[{i}]: account {account.id} belongs to another ledger")
        currency = account.currency
        exponent = exponents.setdefault(currency, account.currency_exponent)
        if exponent != account.currency_exponent:
            return Rejection("currency_exponent_mismatch",
                             f"ledger_entries[{i}]: {currency} with exponent {account.currency_exponent}, "
                             f"another entry has {currency} with exponent {exponent}")
        net[currency] = net.get(currency, 0) + (amount if entry.direction == "debit" else -amount)
    if any(net.values()):
        return _unbalanced(entries, accounts)
    return None


def _unbalanced(entries: list[EntryRequest], accounts: dict[str, Account]) -> Rejection:
    """The rejection of entries that do not balance (each valid on its own): the first currency, by code, whose
    debits and credits differ."""
    debits: dict[str, int] = defaultdict(int)
    credits: dict[str, int] = defaultdict(int)
    for entry in entries:
        currency = accounts[entry.ledger_account_id].currency
        side = debits if entry.direction == "debit" else credits
        side[currency] += entry.amount
    currency = next(c for c in sorted(set(debits) | set(credits)) if debits[c] != credits[c])
    return Rejection("entries_must_balance", f"{currency}: debits {debits[currency]} != credits {credits[currency]}")


def derive_ledger(entries: list[EntryRequest], accounts: dict[str, Account]) -> str | Rejection:
    """The ledger of a transaction created without `ledger_id`: its entries' accounts' one ledger."""
    ledgers = []
    for i, entry in enumerate(entries):
        account = accounts.get(entry.ledger_account_id)
        if account is None:
            return Rejection("ledger_account_not_found",
                             f"ledger_entries[{i}].ledger_account_id {entry.ledger_account_id} does not exist")
        if account.ledger_id not in ledgers:
            ledgers.append(account.ledger_id)
    if not ledgers:
        return Rejection("entries_required", "a ledger transaction needs at least two entries")
    if len(ledgers) > 1:
        return Rejection("entries_in_multiple_ledgers",
                         f"the entries' accounts belong to {len(ledgers)} ledgers; a transaction is in one")
    return ledgers[0]


def validate_partial_post(pending: list[EntryRequest], posted: list[EntryRequest]) -> Rejection | None:
    """One posted entry per pending entry, on the same account and direction, with an amount no larger (the
    amounts' balance is validate_posting's)."""
    if len(posted) != len(pending):
        return Rejection("partial_post_entries_mismatch",
                         f"{len(posted)} posted_ledger_entries for a transaction of {len(pending)} entries: one each")
    remaining = sorted(pending, key=lambda e: e.amount)
    # Smallest posted amount first, each to the smallest pending entry that fits: a matching exists iff this finds it.
    for i, entry in sorted(enumerate(posted), key=lambda p: p[1].amount):
        match = next((p for p in remaining if p.ledger_account_id == entry.ledger_account_id
                      and p.direction == entry.direction and entry.amount <= p.amount), None)
        if match is None:
            return Rejection("partial_post_entries_mismatch",
                             f"posted_ledger_entries[{i}] matches no remaining entry of the pending transaction on "
                             f"account {entry.ledger_account_id} ({entry.direction}) with an amount of at least "
                             f"{entry.amount}")
        remaining.remove(match)
    return None


def entry_needs_lock(entry: EntryRequest) -> bool:
    """An entry whose caller needs an exact answer now: a balance lock, a lock_version, resulting balances."""
    return not entry.condition.is_empty() or entry.show_resulting_balances


def accounts_to_apply(entries: list[EntryRequest], mode: PostingMode) -> list[str]:
    """Accounts whose effects the posting applies in its own transaction (sorted: the lock order).

    Accounts marked sync-only are added by the store, which owns that mutable flag.
    """
    if mode == "sync":
        return sorted({e.ledger_account_id for e in entries})
    return sorted({e.ledger_account_id for e in entries if entry_needs_lock(e)})


def reversal_entries(entries: list[EntryRequest]) -> list[EntryRequest]:
    """A reversal flips every direction; it carries no conditions."""
    return [EntryRequest(e.ledger_account_id, "credit" if e.direction == "debit" else "debit", e.amount)
            for e in entries]

