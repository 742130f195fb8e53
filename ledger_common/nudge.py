"""The nudge wire format: the SQS message a cell sends after a commit and a worker drains (encode + decode)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import msgspec

# `v` lets a future format coexist with workers still draining this one.
NUDGE_VERSION = 1
ACCOUNTS_PER_MESSAGE_MAX = 500  # ~20 KB a message: ten of them fit SendMessageBatch's 256 KB total


class Nudge(msgspec.Struct, frozen=True):
    v: int
    t: str  # tenant id
    a: list[str]  # account ids


_decoder = msgspec.json.Decoder(Nudge)


def encode_nudges(tenant_id: str, account_ids: Iterable[str],
                  accounts_per_message_max: int = ACCOUNTS_PER_MESSAGE_MAX) -> list[str]:
    """Message bodies naming `account_ids` (deduped, sorted), at most accounts_per_message_max each."""
    if accounts_per_message_max < 1:
        raise ValueError("accounts_per_message_max must be >= 1")
    accounts = sorted(set(account_ids))
    return [msgspec.json.encode(Nudge(NUDGE_VERSION, tenant_id, accounts[i:i + accounts_per_message_max])).decode()
            for i in range(0, len(accounts), accounts_per_message_max)]


def decode_nudge(body: str) -> tuple[str, tuple[uuid.UUID, ...]] | None:
    """(tenant id, accounts) of a message body; None for anything that is not a nudge we understand."""
    try:
        nudge = _decoder.decode(body)
        if nudge.v != NUDGE_VERSION:
            return None
        return nudge.t, tuple(uuid.UUID(a) for a in nudge.a)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError):
        return None
