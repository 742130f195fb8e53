"""The API's object shapes (Modern Treasury's field names), built from database rows."""

from __future__ import annotations

from datetime import datetime, timezone

from cell.ledger.balances import balances_view
from cell.ledger.models import Totals


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def totals_of(row, lock_version: int | None = None) -> Totals:
    return Totals(row["pending_debits"], row["pending_credits"], row["posted_debits"], row["posted_credits"],
                  lock_version if lock_version is not None else row.get("lock_version", 0) or 0)


def ledger(row) -> dict:
    return {
        "id": str(row["id"]), "object": "ledger", "live_mode": True,
        "name": row["name"], "description": row["description"], "metadata": row["metadata"],
        "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]),
    }


def account(row, totals: Totals | None = None) -> dict:
    t = totals if totals is not None else totals_of(row)
    return {
        "id": str(row["id"]), "object": "ledger_account", "live_mode": True,
        "name": row["name"], "description": row["description"], "ledger_id": str(row["ledger_id"]),
        "normal_balance": row["normal_balance"], "currency": row["currency"],
        "currency_exponent": row["currency_exponent"], "metadata": row["metadata"],
        "sync_only": row["sync_only"], "lock_version": t.lock_version,
        "balances": balances_view(t, row["normal_balance"], row["currency"], row["currency_exponent"]),
        "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]),
    }


def entry(row, show_balances: bool) -> dict:
    resulting = None
    if show_balances and row["lock_version"] is not None:
        resulting = balances_view(totals_of(row), row["normal_balance"], row["currency"], row["currency_exponent"])
    return {
        "id": str(row["id"]), "object": "ledger_entry", "live_mode": True,
        "amount": row["amount"], "direction": row["direction"], "status": row["status"],
        "ledger_account_id": str(row["ledger_account_id"]),
        "ledger_account_lock_version": row["lock_version"],
        "ledger_account_currency": row["currency"],
        "ledger_account_currency_exponent": row["currency_exponent"],
        "ledger_transaction_id": str(row["transaction_id"]),
        "effective_at": iso(row["effective_at"]),
        "resulting_ledger_account_balances": resulting,
        "created_at": iso(row["created_at"]), "updated_at": iso(row["created_at"]),
    }


def transaction(row, entries: list[dict]) -> dict:
    effective_at = row["effective_at"]
    return {
        "id": str(row["id"]), "object": "ledger_transaction", "live_mode": True,
        "ledger_id": str(row["ledger_id"]), "description": row["description"], "status": row["status"],
        "effective_at": iso(effective_at),
        "effective_date": effective_at.astimezone(timezone.utc).date().isoformat(),
        "external_id": row["external_id"], "metadata": row["metadata"],
        "ledger_entries": entries,
        "posted_at": iso(row["posted_at"]), "archived_at": iso(row["archived_at"]),
        "reverses_ledger_transaction_id": str(row["reverses_id"]) if row["reverses_id"] else None,
        "reversed_by_ledger_transaction_id": str(row["reversed_by_id"]) if row["reversed_by_id"] else None,
        "version": row["version"],
        "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]),
    }
