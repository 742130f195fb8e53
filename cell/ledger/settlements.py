"""Settlement rules, pure: the settlement entry a net of settled entries calls for, and the status lifecycle."""

from __future__ import annotations

from cell.ledger.models import Account, Direction, NormalBalance, Rejection

# Modern Treasury's lifecycle: a draft is finished as pending or posted (or dropped), a pending one posted or
# archived; posted and archived are final.
TRANSITIONS: dict[str, frozenset[str]] = {
    "drafting": frozenset({"pending", "posted", "archived"}),
    "pending": frozenset({"posted", "archived"}),
    "posted": frozenset(),
    "archived": frozenset(),
}


def opposite(direction: Direction) -> Direction:
    return "debit" if direction == "credit" else "credit"


def settlement_leg(normal_balance: NormalBalance, net: int,
                   allow_either_direction: bool) -> tuple[int, Direction | None] | Rejection:
    """The amount and the direction of the settlement's entry on the settled account that brings its settled
    entries' net to zero. `net` is their sum in the account's normal direction (credits - debits for a credit-normal
    account): a positive net is offset against the normal direction; a negative one only when allowed."""
    if net == 0:
        return 0, None
    if net > 0:
        return net, opposite(normal_balance)
    if not allow_either_direction:
        return Rejection("settlement_balance_negative",
                         f"the settled entries' net is {net} against the account's normal balance; settle it with "
                         "allow_either_direction")
    return -net, normal_balance


def transition(current: str, target: str) -> Rejection | None:
    if target not in TRANSITIONS[current]:
        return Rejection("invalid_status_transition", f"a {current} ledger account settlement cannot become {target}")
    return None


def status_event(before: str, after: str) -> str:
    """The event of a change to a settlement whose status went from `before` to `after` (equal: unchanged). Modern
    Treasury's settlement webhooks: finish_processing when it is settled (pending or posted, from a draft or on
    create), finish_archiving when archived; any other change is `updated`."""
    if after != before and after == "archived":
        return "ledger_account_settlement.finish_archiving"
    if after != before and before == "drafting":
        return "ledger_account_settlement.finish_processing"
    return "ledger_account_settlement.updated"


def validate_accounts(settled_id: str, contra_id: str, accounts: dict[str, Account]) -> Rejection | None:
    """The settled and the contra account exist, in one ledger and one currency (the settlement transaction's)."""
    for name, account_id in (("settled_ledger_account_id", settled_id), ("contra_ledger_account_id", contra_id)):
        if account_id not in accounts:
            return Rejection("ledger_account_not_found", f"{name} {account_id} does not exist")
    settled, contra = accounts[settled_id], accounts[contra_id]
    if settled.ledger_id != contra.ledger_id:
        return Rejection("ledger_account_in_other_ledger", "the settled and the contra account are in different ledgers")
    if (settled.currency, settled.currency_exponent) != (contra.currency, contra.currency_exponent):
        return Rejection("currency_mismatch", f"the settled account is in {settled.currency}, the contra account in "
                                              f"{contra.currency}")
    return None
