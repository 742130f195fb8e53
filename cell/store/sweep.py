"""Applying queued balance effects in sorted account groups, and the sweeper built on it: the one sweep
function every worker thread, every worker process's sweeper thread and every cell API process runs."""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg
import msgspec

from cell.store.queries import Q

log = logging.getLogger(__name__)

# Defaults shared by the cell's and the worker's settings: nothing stays unapplied longer than
# after + 2 * interval (one sweep run of slack), the bound `ledgerctl verify` and the metrics check.
SWEEP_AFTER_S_DEFAULT = 5.0
SWEEP_INTERVAL_S_DEFAULT = 2.0
SWEEP_ACCOUNTS_MAX_DEFAULT = 10_000
GROUP_SIZE_MAX_DEFAULT = 256
SWEEP_LOCK_TIMEOUT_MS_DEFAULT = 2_000


def unapplied_age_max_s(sweep_after_s: float, sweep_interval_s: float) -> float:
    """The sweeper's bound: an effect older than sweep_after_s is applied by the next run, at most one
    interval later, and that run may itself take up to an interval."""
    return sweep_after_s + 2 * sweep_interval_s


UNAPPLIED_AGE_MAX_S_DEFAULT = unapplied_age_max_s(SWEEP_AFTER_S_DEFAULT, SWEEP_INTERVAL_S_DEFAULT)


class ApplyOutcome(msgspec.Struct):
    applied: int = 0
    skipped: list[uuid.UUID] = []  # held by another transaction: re-nudged, or left to the next sweep
    failed: list[uuid.UUID] = []  # their group's transaction failed: nothing of it was applied
    failed_groups: int = 0
    lags_ms: list[float] = []


async def apply_groups(pool: asyncpg.Pool, accounts: list[uuid.UUID], *, group_size_max: int, concurrency_max: int,
                       skip_locked: bool, lock_timeout_ms: int = 0,
                       pause_before_commit_s: float = 0.0) -> ApplyOutcome:
    """Apply the accounts' unapplied effects: sorted groups (the lock order), one database transaction each."""
    outcome = ApplyOutcome()
    semaphore = asyncio.Semaphore(concurrency_max)
    ordered = sorted(set(accounts))
    groups = [ordered[i:i + group_size_max] for i in range(0, len(ordered), group_size_max)]

    async def one(group: list[uuid.UUID]) -> None:
        async with semaphore:
            try:
                async with pool.acquire() as conn, conn.transaction():
                    if lock_timeout_ms:
                        await conn.execute(Q["worker_lock_timeout"], f"{lock_timeout_ms}ms")
                    row = await conn.fetchrow(Q["worker_apply"], group, skip_locked)
                    if pause_before_commit_s:
                        await asyncio.sleep(pause_before_commit_s)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                # The transaction rolled back: nothing of this group was applied; its messages stay queued.
                log.warning("apply of %d accounts failed (%s): left for redelivery or the sweeper", len(group), exc)
                outcome.failed.extend(group)
                outcome.failed_groups += 1
                return
        outcome.applied += row["applied"]
        outcome.skipped.extend(row["skipped"])
        outcome.lags_ms.extend(row["lags_ms"])

    await asyncio.gather(*(one(g) for g in groups))
    return outcome


async def sweep(pool: asyncpg.Pool, *, after_s: float, accounts_max: int = SWEEP_ACCOUNTS_MAX_DEFAULT,
                group_size_max: int = GROUP_SIZE_MAX_DEFAULT, concurrency_max: int = 1,
                lock_timeout_ms: int = SWEEP_LOCK_TIMEOUT_MS_DEFAULT) -> ApplyOutcome:
    """Apply every account with an effect unapplied longer than after_s: lost or delayed nudges, SQS or Redis
    down, accounts skipped and never re-nudged. SKIP LOCKED: many sweepers run at once (each worker thread and
    process, each API process) and never queue behind one another; an account another session holds is being
    applied by it, or (a stalled session) is freed by idle_in_transaction_session_timeout before the next run. A
    tenant frozen past its move's lease is made active first (ledger_thaw), its effects then applied."""
    async with pool.acquire() as conn:
        await conn.execute(Q["worker_thaw_expired_freezes"])
        rows = await conn.fetch(Q["worker_stale_accounts"], after_s, accounts_max)
    if not rows:
        return ApplyOutcome()
    return await apply_groups(pool, [r["account_id"] for r in rows], group_size_max=group_size_max,
                              concurrency_max=concurrency_max, skip_locked=True, lock_timeout_ms=lock_timeout_ms)
