"""Pure batching helpers of the drain: the nudge wire format, account dedupe and grouping, deletable messages."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

import msgspec

# The wire format is also written by cell/service/nudge.py (cell code does not import the worker); a unit
# test round-trips one into the other. `v` lets a future format coexist with workers still draining this one.
NUDGE_VERSION = 1
ACCOUNTS_PER_MESSAGE_MAX = 500  # ~20 KB a message: ten of them fit SendMessageBatch's 256 KB total
SQS_BATCH_MAX = 10  # SendMessageBatch / DeleteMessageBatch entries per call (an SQS limit)


class Nudge(msgspec.Struct, frozen=True):
    v: int
    t: str  # tenant id
    a: list[str]  # account ids


class Received(msgspec.Struct, frozen=True):
    """One SQS message as the drain sees it: its receipt, and its accounts (None when undecodable)."""

    message_id: str
    receipt: str
    tenant_id: str | None
    accounts: tuple[uuid.UUID, ...] | None


_decoder = msgspec.json.Decoder(Nudge)


def encode_nudges(tenant_id: str, account_ids: Iterable[str],
                  accounts_per_message_max: int = ACCOUNTS_PER_MESSAGE_MAX) -> list[str]:
    """Message bodies naming `account_ids` (deduped, sorted), at most accounts_per_message_max each."""
    accounts = sorted(set(account_ids))
    return [msgspec.json.encode(Nudge(NUDGE_VERSION, tenant_id, chunk)).decode()
            for chunk in chunks(accounts, accounts_per_message_max)]


def decode_nudge(body: str) -> tuple[str, tuple[uuid.UUID, ...]] | None:
    """(tenant id, accounts) of a message body; None for anything that is not a nudge we understand."""
    try:
        nudge = _decoder.decode(body)
        if nudge.v != NUDGE_VERSION:
            return None
        return nudge.t, tuple(uuid.UUID(a) for a in nudge.a)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError):
        return None


def chunks(items: Sequence, size_max: int) -> list[list]:
    if size_max < 1:
        raise ValueError("size_max must be >= 1")
    return [list(items[i:i + size_max]) for i in range(0, len(items), size_max)]


def batch_accounts(messages: Iterable[Received]) -> list[uuid.UUID]:
    """Every account named by the batch, once, in sorted order (the order every lock is taken in)."""
    seen: set[uuid.UUID] = set()
    for m in messages:
        if m.accounts:
            seen.update(m.accounts)
    return sorted(seen)


def group_accounts(accounts: Sequence[uuid.UUID], group_size_max: int) -> list[list[uuid.UUID]]:
    """Sorted accounts cut into groups: one transaction each, so one lock set each."""
    return chunks(sorted(set(accounts)), group_size_max)


def deletable(messages: Iterable[Received], handled: set[uuid.UUID]) -> list[Received]:
    """Messages safe to delete: undecodable ones (they can never be applied) and those whose every account
    was handled (applied in a committed transaction, or re-nudged). The others come back after their
    visibility timeout, and the sweeper covers them even if they never do."""
    return [m for m in messages if m.accounts is None or all(a in handled for a in m.accounts)]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of values; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return float(ordered[rank - 1])
