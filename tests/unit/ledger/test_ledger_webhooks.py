"""Webhooks' pure rules: the signature the official SDK checks, the back-off schedule, which events are wanted."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

import msgspec
from modern_treasury import ModernTreasury

from cell.ledger.webhooks import EVENT_NAMES, new_key, retry_delay_s, signature, wants
from cell.service.events import Draft, webhook_body

SDK = ModernTreasury(api_key="unused", organization_id="unused", base_url="http://127.0.0.1:9")


def test_the_sdk_accepts_the_signature_of_the_body_and_nothing_else():
    key = new_key()
    at = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    body = webhook_body({"id": uuid.uuid4(), "resource": "ledger_account", "event_name": "ledger_account.created",
                         "event_time": at, "entity_id": uuid.uuid4(), "data": {"name": "café ☕"}, "facts": None})
    assert SDK.webhooks.validate_signature(body.decode(), {"X-Signature": signature(body, key)}, key=key)
    assert not SDK.webhooks.validate_signature(body.decode() + " ", {"X-Signature": signature(body, key)}, key=key)
    assert not SDK.webhooks.validate_signature(body.decode(), {"X-Signature": signature(body, new_key())}, key=key)
    event = msgspec.json.decode(body)
    assert event["object"] == "event" and event["live_mode"] is True
    assert event["event_time"] == "2024-05-01T10:00:00Z"  # UTC, as every time the API answers


def test_the_back_off_grows_exponentially_with_jitter_up_to_its_cap():
    rng = random.Random(7)
    for attempts in range(1, 30):
        full = min(3600.0, 10.0 * 2 ** (attempts - 1))
        delay = retry_delay_s(attempts, 10.0, 3600.0, rng)
        assert full / 2 <= delay <= full
    assert retry_delay_s(10_000, 10.0, 3600.0, rng) <= 3600.0


def test_an_endpoint_without_event_names_wants_every_event():
    assert wants([], "ledger_transaction.posted")
    assert wants(["ledger_transaction.posted"], "ledger_transaction.posted")
    assert not wants(["ledger_transaction.posted"], "ledger_transaction.created")


def test_every_event_the_cell_writes_is_one_an_endpoint_may_ask_for():
    """The service's events are Drafts, which refuse a name not in EVENT_NAMES; the routines name theirs in SQL."""
    import re
    from pathlib import Path

    import pytest

    with pytest.raises(ValueError):
        Draft("ledger_transaction", "ledger_transaction.craeted", uuid.uuid4(), {})
    routines = Path(__file__).parents[3] / "cell" / "store" / "routines"
    resources = {name.split(".")[0] for name in EVENT_NAMES}
    named = {m for path in routines.glob("*.sql") for m in re.findall(r"'([a-z_]+\.[a-z_]+)'", path.read_text())
             if m.split(".")[0] in resources and m != "ledger.tenant"}  # the acting tenant's setting
    assert named == {"balance_monitor.triggered", "balance_monitor.resolved"}
    assert named <= set(EVENT_NAMES)
