"""Bulk requests, as the worker runs them: claim the oldest open request, process it with the cell's own use
cases (cell.service.bulk), and apply the balances its new transactions queued right after each chunk; a request past
its attempts (bulk_attempts_max) is given up."""

from __future__ import annotations

import logging
import time
import uuid

import asyncpg

from cell.service import bulk as bulk_service
from cell.service import views
from cell.service.context import AccountCache, CellContext
from cell.settings import CellSettings
from cell.store import bulk as store
from cell.store.db import listening
from ledger_common.pacing import AsyncPacer
from worker import drain, metrics
from worker.settings import WorkerSettings

ACCOUNT_CACHE_SIZE_MAX = 10_000
log = logging.getLogger(__name__)


class ApplyingNudger:
    """The posting path's nudge, inside a worker: the worker is an applier itself, so it applies the accounts a
    chunk left unapplied at once instead of queueing a message for itself."""

    def __init__(self, pool: asyncpg.Pool, settings: WorkerSettings) -> None:
        self.pool = pool
        self.settings = settings

    async def nudge(self, tenant_id: str, account_ids: list[str]) -> None:
        await drain.apply_accounts(self.pool, [uuid.UUID(a) for a in account_ids],
                                   group_size_max=self.settings.group_size_max,
                                   concurrency_max=self.settings.apply_concurrency_max, skip_locked=False,
                                   lock_timeout_ms=self.settings.sweep_lock_timeout_ms, by="bulk")

    async def close(self) -> None:
        return None


def cell_context(pool: asyncpg.Pool, settings: WorkerSettings) -> CellContext:
    """The cell's use cases as a worker runs them: its pool, the cell's posting mode."""
    cell = CellSettings(name=settings.cell_name, database_url=settings.database_url,
                        posting_mode=settings.posting_mode, db_acquire_s_max=30.0)
    return CellContext(settings=cell, pool=pool, cache=AccountCache(ACCOUNT_CACHE_SIZE_MAX),
                       nudger=ApplyingNudger(pool, settings), after_run=drain.EVENTS_WRITTEN.set)


async def process_for(pool: asyncpg.Pool, settings: WorkerSettings, duration_s: float) -> int:
    """Process open requests for about duration_s (a request under way is finished first); how many completed."""
    ctx = cell_context(pool, settings)
    pacer = AsyncPacer(settings.bulk_poll_s, settings.bulk_poll_idle_s)
    completed = 0
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        request = await next_request(pool, settings, deadline, pacer)
        if request is None:
            continue
        done = await _attempt(ctx, settings, request)
        if done is not None:
            completed += 1
            metrics.BULK_RESOURCES.labels("successful").inc(done.success_result_count)
            metrics.BULK_RESOURCES.labels("failed").inc(done.failed_result_count)
    return completed


async def _attempt(ctx: CellContext, settings: WorkerSettings, request) -> views.BulkRequest | None:
    """One attempt at a claimed request: processed, or given up once past its attempts. A failure is logged and
    counted, and the request left to its lease's end (then claimed again: another attempt); this worker goes on with
    the other requests."""
    what = f"bulk request {request['id']} of tenant {request['tenant_id']}"
    attempts_max = settings.bulk_attempts_max
    if bulk_service.attempts_exhausted(request, attempts_max):
        done = await bulk_service.give_up(ctx, request, attempts_max)
        if done is not None:
            metrics.BULK_REQUESTS_GIVEN_UP.inc()
            log.error("%s given up after %d failed attempts (bulk_attempts_max): %d resources successful, %d failed "
                      "(those not applied: bulk_attempts_exhausted)", what, attempts_max, done.success_result_count,
                      done.failed_result_count)
        return done
    try:
        return await bulk_service.process(ctx, request, chunk_size=settings.bulk_chunk_size,
                                          chunks_at_once=settings.bulk_chunks_at_once, lease_s=settings.bulk_lease_s,
                                          pause_between_chunks_s=settings.fault_pause_between_bulk_chunks_s)
    except Exception as exc:
        metrics.BULK_ATTEMPTS_FAILED.inc()
        transient = isinstance(exc, bulk_service.TRANSIENT)
        log.log(logging.WARNING if transient else logging.ERROR, "%s: attempt %d of %d failed; retried after its "
                "lease (%s s)", what, request["attempts"], attempts_max, settings.bulk_lease_s,
                exc_info=not transient)
        return None


async def next_request(pool: asyncpg.Pool, settings: WorkerSettings, deadline: float,
                       pacer: AsyncPacer) -> asyncpg.Record | None:
    """The oldest open request, claimed; None at the deadline. Waiting, it listens for new requests (a request
    created is claimed at once, bulk_poll_s after the last claim at the most) and polls too, as `pacer` says: every
    bulk_poll_s, backing off to bulk_poll_idle_s (a request whose claim lapsed, a notification missed between two
    tasks)."""

    def created(*_notification) -> None:
        pacer.nudge()

    async with listening(pool, store.NEW_REQUEST_CHANNEL, created):
        while True:  # each claim on a connection of its own: a listening session PostgreSQL ended stops no claim
            async with pool.acquire() as conn:
                request = await store.claim_request(conn, settings.bulk_lease_s)
            if request is not None:
                pacer.after(True)
                return request
            if time.monotonic() >= deadline:
                return None
            await pacer.wait(time.monotonic(), False, until=deadline)
