"""Pure batching helpers of the drain: account dedupe and grouping, deletable messages."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

import msgspec


class Received(msgspec.Struct, frozen=True):
    """One SQS message as the drain sees it: its receipt, and its accounts (None when undecodable)."""

    message_id: str
    receipt: str
    tenant_id: str | None
    accounts: tuple[uuid.UUID, ...] | None


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
