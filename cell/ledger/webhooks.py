"""Webhooks' pure rules: the signature Modern Treasury's SDK checks, the retry schedule and which events an
endpoint wants (a delivery's body is the event as the API renders it: cell.service.events.webhook_body)."""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets

KEY_PREFIX = "whk_"
EVENT_NAMES_MAX = 64
WEBHOOK_RETRY_WINDOW_S_DEFAULT = 86_400.0  # retried for about a day, then failed (redeliver brings it back)

# Every event a cell writes (cell.service.events.Draft refuses another; the monitor routine's two are checked by
# tests/unit/ledger/test_ledger_webhooks.py): the names an endpoint may ask for, so a misspelt one is a 422, not an
# endpoint that silently never hears of it.
EVENT_NAMES = (
    "balance_monitor.created", "balance_monitor.updated", "balance_monitor.deleted",
    "balance_monitor.triggered", "balance_monitor.resolved",
    "bulk_request.completed",
    "ledger.created", "ledger.updated", "ledger.deleted",
    "ledger_account.created", "ledger_account.updated", "ledger_account.deleted",
    "ledger_account_category.created", "ledger_account_category.updated", "ledger_account_category.deleted",
    "ledger_account_settlement.created", "ledger_account_settlement.updated",
    "ledger_account_settlement.finish_processing", "ledger_account_settlement.finish_archiving",
    "ledger_account_statement.created",
    "ledger_transaction.created", "ledger_transaction.updated", "ledger_transaction.posted",
    "ledger_transaction.archived", "ledger_transaction.reversed",
)


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def signature(body: bytes, key: str) -> str:
    """X-Signature: hex HMAC-SHA256 of the raw body keyed with the endpoint's key (the SDK's
    `webhooks.get_signature(payload, key=...)` on the body as text)."""
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def wants(event_names: list[str], event_name: str) -> bool:
    """An endpoint with no event names wants every event."""
    return not event_names or event_name in event_names


def retry_delay_s(attempts: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Exponential back-off with jitter after the `attempts`-th failed attempt: base * 2^(attempts-1), at most
    cap, then a uniform draw in [half, full] of it (so receivers coming back are not hit by every retry at once)."""
    full = min(cap_s, base_s * (2 ** min(max(attempts - 1, 0), 40)))
    return (rng or random).uniform(full / 2, full)
