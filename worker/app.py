"""The Celery app of one cell: the drain, sweep and verify tasks, their beat schedule, a runtime per thread."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
from celery import Celery
from celery.signals import worker_ready

from cell.store.db import create_pool
from worker import drain, metrics
from worker.settings import WorkerSettings
from worker.sqs import SqsQueue

log = logging.getLogger(__name__)


class _Runtime:
    """One event loop and one asyncpg pool per Celery thread: a pool belongs to the loop that made it."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool: asyncpg.Pool | None = None
        self.settings = settings

    def run(self, fn: Callable[[asyncpg.Pool], Awaitable]):
        async def go():
            if self.pool is None:
                self.pool = await create_pool(self.settings.database_url, min_size=1,
                                              max_size=self.settings.db_pool_max, role=self.settings.db_role)
            return await fn(self.pool)

        return self.loop.run_until_complete(go())


def create_celery(settings: WorkerSettings, queue: SqsQueue | None = None) -> Celery:
    """The app for one cell. `queue` is shared by every thread (boto3 clients are thread-safe)."""
    queue = queue or SqsQueue(settings)
    local = threading.local()

    def runtime() -> _Runtime:
        if not hasattr(local, "runtime"):
            local.runtime = _Runtime(settings)
        return local.runtime

    app = Celery(f"ledger-worker-{settings.cell_name}", broker=settings.broker_url)
    drain_expires_s = max(1.0, settings.drain_run_s)
    app.conf.update(
        task_default_queue=settings.celery_queue,
        task_ignore_result=True,
        # Early ack: a task lost with its worker is harmless, beat sends the next one (the queue of
        # effects in PostgreSQL is the truth; these tasks are only the hands that apply it).
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        timezone="UTC",
        beat_scheduler="celery.beat:Scheduler",  # in memory: nothing to persist, the schedule is fixed
        beat_schedule=_schedule(settings, drain_expires_s),
    )

    @app.task(name="ledger.worker.drain")
    def drain_task() -> dict:
        outcome = runtime().run(lambda pool: drain.drain_for(pool, queue, settings, settings.drain_run_s))
        return {"messages": outcome.messages, "applied": outcome.applied}

    @app.task(name="ledger.worker.sweep")
    def sweep_task() -> int:
        try:
            return runtime().run(lambda pool: drain.sweep(pool, settings))
        except Exception:
            metrics.ERRORS.labels("sweep").inc()
            raise

    @app.task(name="ledger.worker.verify")
    def verify_task() -> int:
        try:
            return len(runtime().run(lambda pool: drain.verify(pool, settings)))
        except Exception:
            metrics.ERRORS.labels("verify").inc()
            raise

    @worker_ready.connect(weak=False)
    def _start_draining(**_kwargs) -> None:
        # Beat's first tick is one interval away: start draining now.
        for _ in range(settings.drainers):
            drain_task.apply_async(expires=drain_expires_s)
        sweep_task.apply_async(expires=settings.sweep_every_s)

    app.ledger_tasks = {"drain": drain_task, "sweep": sweep_task, "verify": verify_task}  # type: ignore[attr-defined]
    return app


def _schedule(settings: WorkerSettings, drain_expires_s: float) -> dict:
    schedule = {
        f"drain-{i}": {"task": "ledger.worker.drain", "schedule": timedelta(seconds=settings.drain_run_s),
                       "options": {"expires": drain_expires_s}}
        for i in range(settings.drainers)
    }
    schedule["sweep"] = {"task": "ledger.worker.sweep", "schedule": timedelta(seconds=settings.sweep_every_s),
                         "options": {"expires": settings.sweep_every_s}}
    if settings.verify_every_s > 0:
        schedule["verify"] = {"task": "ledger.worker.verify", "schedule": timedelta(seconds=settings.verify_every_s),
                              "options": {"expires": settings.verify_every_s}}
    return schedule
