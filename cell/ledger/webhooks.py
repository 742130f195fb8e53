"""Webhooks' pure rules: the signature Modern Treasury's SDK checks, the retry schedule and which events an
endpoint wants (a delivery's body is the event as the API renders it: cell.service.events.webhook_body)."""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets

KEY_PREFIX = "whk_"
EVENT_NAMES_MAX = 64
EVENT_NAME_LENGTH_MAX = 128
WEBHOOK_RETRY_WINDOW_S_DEFAULT = 86_400.0  # retried for about a day, then failed (redeliver brings it back)


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
