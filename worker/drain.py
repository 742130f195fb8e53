"""The async half of posting: drain the cell's SQS queue in batches and apply, sweep stale effects, verify."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from collections import defaultdict

import asyncpg
import msgspec

from cell.store.queries import Q
from cell.store.sweep import ApplyOutcome, apply_groups
from cell.store.sweep import sweep as store_sweep
from cell.store.verify import (
    verify as verify_cell,  # the invariants of DESIGN.md section 8
)
from ledger_common.nudge import encode_nudges
from ledger_common.sqs import SQS_BATCH_MAX
from worker import metrics
from worker.batching import Received, batch_accounts, deletable
from worker.settings import WorkerSettings
from worker.sqs import SqsQueue

log = logging.getLogger(__name__)
# Set after this process applied effects or ran a use case (a bulk request's): either may have written events
# (a balance monitor's, a bulk request's), which this process's events sequencer (worker.app.start_sequencer)
# then positions at its fast interval instead of its idle one.
EVENTS_WRITTEN = threading.Event()


class DrainOutcome(msgspec.Struct):
    messages: int = 0
    accounts: int = 0
    applied: int = 0
    skipped: int = 0
    deleted: int = 0


async def apply_accounts(pool: asyncpg.Pool, accounts: list[uuid.UUID], *, group_size_max: int,
                         concurrency_max: int, skip_locked: bool, lock_timeout_ms: int = 0,
                         pause_before_commit_s: float = 0.0, by: str = "drain") -> ApplyOutcome:
    """Apply the accounts' unapplied effects (cell.store.sweep.apply_groups) and record the worker's metrics."""
    outcome = await apply_groups(pool, accounts, group_size_max=group_size_max, concurrency_max=concurrency_max,
                                 skip_locked=skip_locked, lock_timeout_ms=lock_timeout_ms,
                                 pause_before_commit_s=pause_before_commit_s)
    _record(outcome, by)
    return outcome


def _record(outcome: ApplyOutcome, by: str) -> None:
    if outcome.failed_groups:
        metrics.ERRORS.labels(by).inc(outcome.failed_groups)
    for lag_ms in outcome.lags_ms:
        metrics.APPLY_LAG.observe(lag_ms / 1000)
    metrics.EFFECTS_APPLIED.labels(by).inc(outcome.applied)
    if outcome.applied:
        EVENTS_WRITTEN.set()
    metrics.ACCOUNTS_SKIPPED.inc(len(outcome.skipped))


async def gather_batch(queue: SqsQueue, settings: WorkerSettings, wait_first_s: int) -> list[Received]:
    """Long-poll for a first message; unless it came back full, wait out batch_wait_ms_max once; then read
    while there may be more (after that wait, or while reads come back full), up to batch_size_max. One
    receive a batch when nudges come one at a time (batch_wait_ms_max 0: the cells coalesce), about two
    otherwise: each call costs the SQS endpoint CPU (and real SQS bills per call)."""
    batch = await asyncio.to_thread(queue.receive, settings.batch_size_max, wait_first_s)
    if not batch:
        return []
    more_may_wait = len(batch) >= SQS_BATCH_MAX
    if not more_may_wait and settings.batch_wait_ms_max > 0:
        await asyncio.sleep(settings.batch_wait_ms_max / 1000)
        more_may_wait = True
    while more_may_wait and len(batch) < settings.batch_size_max:
        more = await asyncio.to_thread(queue.receive, settings.batch_size_max - len(batch), 0)
        batch.extend(more)
        more_may_wait = len(more) >= SQS_BATCH_MAX
    return batch


DELETE_DEFER_S_MAX = 1.0


class DeferredDeletes:
    """Messages whose accounts are applied (committed), deleted together: one DeleteMessageBatch for up to
    SQS_BATCH_MAX of them, or once the oldest has waited hold_s (DELETE_DEFER_S_MAX, and a quarter of the
    visibility timeout at most, so nothing comes back meanwhile). A crash before the delete only brings them
    back for a no-op re-apply."""

    def __init__(self, queue: SqsQueue, hold_s: float = 0.0) -> None:
        self.queue = queue
        self.hold_s = hold_s
        self.messages: list[Received] = []
        self.since = 0.0

    def add(self, messages: list[Received]) -> None:
        if messages and not self.messages:
            self.since = time.monotonic()
        self.messages.extend(messages)

    def due(self) -> bool:
        return len(self.messages) >= SQS_BATCH_MAX or (
            bool(self.messages) and time.monotonic() - self.since >= self.hold_s)

    async def flush(self) -> int:
        """Delete what is held; returns how many SQS deleted."""
        messages, self.messages = self.messages, []
        if not messages:
            return 0
        failed = await asyncio.to_thread(self.queue.delete, messages)
        metrics.MESSAGES_DELETED.inc(len(messages) - failed)
        return len(messages) - failed


async def drain_batch(pool: asyncpg.Pool, queue: SqsQueue, settings: WorkerSettings,
                      wait_first_s: int | None = None, deletes: DeferredDeletes | None = None) -> DrainOutcome:
    """One batch: gather, dedupe, apply (skip-locked), re-nudge skipped accounts, then delete the messages
    whose accounts are all handled (now, or with `deletes` when it is due). Deleting only after commit is what
    makes a crash lose nothing."""
    wait = settings.long_poll_s_max if wait_first_s is None else wait_first_s
    batch = await gather_batch(queue, settings, wait)
    if not batch:
        return DrainOutcome()
    accounts = batch_accounts(batch)
    undecodable = sum(1 for m in batch if m.accounts is None)
    if undecodable:
        log.warning("%d SQS messages were not nudges; deleting them", undecodable)
        metrics.MESSAGES_UNDECODABLE.inc(undecodable)
    metrics.BATCH_MESSAGES.observe(len(batch))
    metrics.BATCH_ACCOUNTS.observe(len(accounts))

    outcome = await apply_accounts(
        pool, accounts, group_size_max=settings.group_size_max, concurrency_max=settings.apply_concurrency_max,
        skip_locked=True, pause_before_commit_s=settings.fault_pause_before_commit_s,
    )
    handled = set(accounts) - set(outcome.failed)
    if outcome.skipped:
        try:
            await asyncio.to_thread(queue.send, _renudge_bodies(batch, outcome.skipped))
        except Exception as exc:  # noqa: BLE001 - SQS down: the messages stay, redelivery or the sweeper
            log.warning("re-nudge of %d skipped accounts failed: %s", len(outcome.skipped), exc)
            handled -= set(outcome.skipped)

    if settings.fault_pause_before_delete_s:
        await asyncio.sleep(settings.fault_pause_before_delete_s)
    own = deletes is None
    deletes = DeferredDeletes(queue) if own else deletes
    deletes.add(deletable(batch, handled))
    deleted = await deletes.flush() if own or deletes.due() else 0
    return DrainOutcome(messages=len(batch), accounts=len(accounts), applied=outcome.applied,
                        skipped=len(outcome.skipped), deleted=deleted)


def _renudge_bodies(batch: list[Received], skipped: list[uuid.UUID]) -> list[str]:
    skipped_set = set(skipped)
    by_tenant: dict[str, set[str]] = defaultdict(set)
    for m in batch:
        for a in m.accounts or ():
            if a in skipped_set:
                by_tenant[m.tenant_id or ""].add(str(a))
    return [body for tenant, accounts in sorted(by_tenant.items()) for body in encode_nudges(tenant, accounts)]


async def drain_for(pool: asyncpg.Pool, queue: SqsQueue, settings: WorkerSettings, run_s: float) -> DrainOutcome:
    """Drain batch after batch for about run_s seconds (one Celery task's life), receiving at most once every
    receive_every_ms_min while batches empty the queue (one call then takes what came meanwhile); the handled
    messages are deleted together (DeferredDeletes), the last of them when the task ends."""
    total = DrainOutcome()
    deletes = DeferredDeletes(queue, min(DELETE_DEFER_S_MAX, settings.visibility_timeout_s / 4))
    deadline = time.monotonic() + run_s
    next_receive_at = 0.0
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                if (pause_s := min(next_receive_at, deadline) - time.monotonic()) > 0:
                    await asyncio.sleep(pause_s)
                    continue  # the deadline may have passed; the loop condition says
                if deletes.due():
                    total = msgspec.structs.replace(total, deleted=total.deleted + await deletes.flush())
                # Rounded up: the last second of a task long-polls too, instead of spinning on empty short polls
                # (with long_poll_s_max 0, polls are short by choice).
                wait_s = min(settings.long_poll_s_max, math.ceil(remaining))
                if deletes.messages:
                    wait_s = min(wait_s, 1)  # idle now: back within a second to delete what is held
                received_at = time.monotonic()
                one = await drain_batch(pool, queue, settings, wait_s, deletes)
                if 0 < one.messages < settings.batch_size_max:  # the queue was emptied: pace the next receive
                    next_receive_at = received_at + settings.receive_every_ms_min / 1000
            except Exception:  # noqa: BLE001 - SQS or the database unreachable: back off, the sweeper covers
                log.exception("drain batch failed")
                metrics.ERRORS.labels("drain").inc()
                await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                continue
            total = DrainOutcome(*(a + b for a, b in zip(msgspec.structs.astuple(total),
                                                         msgspec.structs.astuple(one))))
    finally:
        try:
            total = msgspec.structs.replace(total, deleted=total.deleted + await deletes.flush())
        except Exception:  # noqa: BLE001 - not deleted: they come back after the visibility timeout, a no-op
            log.exception("deleting the drained messages failed")
            metrics.ERRORS.labels("drain").inc()
    return total


async def sweep(pool: asyncpg.Pool, settings: WorkerSettings) -> int:
    """Apply every account with an effect unapplied longer than sweep_after_s (cell.store.sweep.sweep, the
    function the cell's API processes run too). Run by the beat task and by every worker process's sweeper
    thread, which needs neither Redis nor SQS."""
    outcome = await store_sweep(pool, after_s=settings.sweep_after_s, accounts_max=settings.sweep_accounts_max,
                                group_size_max=settings.group_size_max,
                                concurrency_max=settings.apply_concurrency_max,
                                lock_timeout_ms=settings.sweep_lock_timeout_ms)
    _record(outcome, "sweep")
    if outcome.applied:
        log.info("sweeper applied %d effects", outcome.applied)
    return outcome.applied


async def verify(pool: asyncpg.Pool, settings: WorkerSettings) -> list[str]:
    """The periodic verifier: every invariant (cell.store.verify) of every tenant the cell serves, including the
    sweeper's bound."""
    async with pool.acquire() as conn:
        # It recomputes every cache of the cell: the one reader allowed past statement_ms_max (it takes no locks).
        await conn.execute(Q["worker_statement_timeout"], "0")
        try:
            violations = await verify_cell(conn, None, unapplied_age_max_s=settings.unapplied_age_max_s)
        finally:
            await conn.execute(Q["worker_statement_timeout"], f"{settings.statement_ms_max}ms")
    metrics.VERIFY_VIOLATIONS.set(len(violations))
    for v in violations:
        log.error("invariant violated: %s", v)
    return violations
