"""The Celery app of one cell: the drain, sweep and verify tasks, their beat schedule, a runtime per thread."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
from celery import Celery
from celery.signals import worker_ready
from celery.worker.consumer import Consumer
from kombu.utils.url import url_to_parts

from cell.store import events as store_events
from cell.store.db import INDEX_PLANS, create_pool, session_bounds
from ledger_common.pacing import Pacer
from ledger_common.server_urls import url_refusals_redacted
from worker import bulk, drain, metrics, webhooks
from worker.sealer import Sealer
from worker.settings import WorkerSettings
from worker.sqs import SqsQueue

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 5.0


class BoundedRetryConsumer(Consumer):
    """Celery's consumer reconnects to the broker 2, 4, 6 ... 30 s apart, whatever the transport options say:
    here the intervals stop growing at broker_retry_s_max, so a Valkey that comes back is used within ~2 s."""

    def ensure_connected(self, conn):
        retry_s_max = self.app.conf.get("ledger_broker_retry_s_max", 2.0)
        plain = conn.ensure_connection

        def bounded(*args, **kwargs):
            kwargs.update(interval_start=0, interval_step=retry_s_max / 4, interval_max=retry_s_max)
            return plain(*args, **kwargs)

        conn.ensure_connection = bounded
        return super().ensure_connected(conn)

    def on_connection_error_after_connected(self, exc):
        """A task reserved but not started (more tasks than threads) is unacked; closing the lost connection makes
        kombu restore it through a transport that collect() has already cleared, which raises AttributeError
        ('NoneType' object has no attribute 'hostname') and would end the worker. The connection is dropped by
        then; the task is lost with the broker, which is harmless: beat sends the next one."""
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError as restore_failed:
            log.warning("unacknowledged tasks not restored to the lost broker (%s); beat sends them again",
                        restore_failed)


def _periodic(settings: WorkerSettings, name: str, pacer: Pacer,
              job: Callable[[asyncpg.Pool], Awaitable]) -> threading.Thread:
    """`job` in a thread with an event loop and a pool of its own, needing only PostgreSQL (no broker, no beat, no
    SQS), as often as `pacer` says (a round that returns a positive count found work); a failure (the database down)
    is logged and counted, and the next round tries again."""

    def loop() -> None:
        runtime = _Runtime(settings, INDEX_PLANS)
        while True:
            found = False
            try:
                found = bool(runtime.run(job))
            except Exception as exc:  # noqa: BLE001 - the database is down: try again next interval
                log.warning("%s failed: %s", name, exc)
                metrics.ERRORS.labels(name).inc()
            pacer.wait(time.monotonic(), found)

    thread = threading.Thread(target=loop, name=f"ledger-{name}", daemon=True)
    thread.start()
    return thread


def start_sweeper(settings: WorkerSettings) -> threading.Thread:
    """The sweeper must not share fate with what it backs up: its own thread every sweep_every_s. Started before
    Celery, so a broker that is down at start-up does not stop it either."""
    return _periodic(settings, "sweep", Pacer(settings.sweep_every_s, settings.sweep_every_s),
                     lambda pool: drain.sweep(pool, settings))


def start_sequencer(settings: WorkerSettings) -> threading.Thread:
    """The events sequencer (cell.store.events.sequence_due): every events_sequence_interval_s while it finds events
    or this process writes some (drain.EVENTS_WRITTEN), backing off to events_sequence_idle_s while idle; whatever
    Redis, SQS or beat do. One sequencer runs at a time in the cell (an advisory lock): the others' calls return at
    once."""
    pacer = Pacer(settings.events_sequence_interval_s, settings.events_sequence_idle_s, drain.EVENTS_WRITTEN)
    return _periodic(settings, "sequence_events", pacer, store_events.sequence_due)


def start_sealer(settings: WorkerSettings) -> threading.Thread | None:
    """The audit sealer every audit_seal_every_s (the database or the anchor store down: next interval); None
    when sealing is off."""
    if settings.audit_seal_every_s <= 0:
        return None
    pacer = Pacer(settings.audit_seal_every_s, settings.audit_seal_every_s)
    return _periodic(settings, "seal", pacer, Sealer(settings).run)


class _Runtime:
    """One event loop and one asyncpg pool per Celery thread: a pool belongs to the loop that made it."""

    def __init__(self, settings: WorkerSettings, planner: dict[str, str] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool: asyncpg.Pool | None = None
        self.settings = settings
        self.planner = planner or {}  # INDEX_PLANS for the periodic jobs' pools

    def run(self, fn: Callable[[asyncpg.Pool], Awaitable]):
        async def go():
            if self.pool is None:
                self.pool = await create_pool(
                    self.settings.database_url, min_size=1, max_size=self.settings.db_pool_max,
                    role=self.settings.db_role, connect_timeout_s=CONNECT_TIMEOUT_S,
                    url_setting="WORKER_DATABASE_URL (or LEDGER_DATABASE_URL)",
                    server_settings={**session_bounds(
                        idle_in_transaction_ms_max=self.settings.idle_in_transaction_ms_max,
                        statement_ms_max=self.settings.statement_ms_max,
                        lock_wait_ms_max=self.settings.lock_wait_ms_max), **self.planner})
            return await fn(self.pool)

        return self.loop.run_until_complete(go())


def create_celery(settings: WorkerSettings, queue: SqsQueue | None = None) -> Celery:
    """The app for one cell. `queue` is shared by every thread (boto3 clients are thread-safe)."""
    queue = queue or SqsQueue(settings)
    local = threading.local()

    def runtime(planner: dict[str, str] | None = None) -> _Runtime:
        """This thread's runtime for the planner settings asked (the webhook deliverer's and bulk's sessions plan
        index-only, db.INDEX_PLANS; the verifier's must not)."""
        runtimes = local.__dict__.setdefault("runtimes", {})
        key = tuple(sorted((planner or {}).items()))
        if key not in runtimes:
            runtimes[key] = _Runtime(settings, planner)
        return runtimes[key]

    with url_refusals_redacted("WORKER_BROKER_URL (or LEDGER_BROKER_URL)"):
        url_to_parts(settings.broker_url)  # Celery's parser, read here first: its errors quote what they cannot read
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
        broker_connection_retry=True,
        broker_connection_max_retries=None,  # forever: giving up would end the process and its sweeper thread
        broker_connection_timeout=settings.broker_retry_s_max,
        broker_transport_options={
            # redis-py: a dead or half-open socket is noticed within seconds (socket_timeout stays above
            # kombu's 1 s BRPOP), and publishes retry at most broker_retry_s_max apart.
            "socket_connect_timeout": settings.broker_retry_s_max,
            "socket_timeout": 5,
            "socket_keepalive": True,
            "health_check_interval": 5,
            "retry_policy": {"interval_start": 0, "interval_step": settings.broker_retry_s_max / 4,
                             "interval_max": settings.broker_retry_s_max, "max_retries": 3},
        },
        worker_consumer="worker.app:BoundedRetryConsumer",
        ledger_broker_retry_s_max=settings.broker_retry_s_max,
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
            return runtime(INDEX_PLANS).run(lambda pool: drain.sweep(pool, settings))
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

    @app.task(name="ledger.worker.webhooks")
    def webhooks_task() -> dict:
        try:
            outcome = runtime(INDEX_PLANS).run(lambda pool: webhooks.deliver_for(pool, settings,
                                                                                settings.webhook_run_s))
        except Exception:
            metrics.ERRORS.labels("webhooks").inc()
            raise
        return {"fanned_out": outcome.fanned_out, "succeeded": outcome.succeeded,
                "failed_attempts": outcome.failed_attempts}

    @app.task(name="ledger.worker.bulk")
    def bulk_task() -> int:
        try:
            # The API's use cases, so planned as the API's sessions are (index-only): a plan made while the tables
            # were small walked them for each resource (tests/integration/worker/test_bulk_plans.py).
            return runtime(INDEX_PLANS).run(lambda pool: bulk.process_for(pool, settings, settings.bulk_run_s))
        except Exception:
            metrics.ERRORS.labels("bulk").inc()
            raise

    @worker_ready.connect(weak=False)
    def _start_draining(**_kwargs) -> None:
        # Beat's first tick is one interval away: start draining now.
        for _ in range(settings.drainers):
            drain_task.apply_async(expires=drain_expires_s)
        webhooks_task.apply_async(expires=settings.webhook_run_s)
        bulk_task.apply_async(expires=settings.bulk_run_s)

    app.ledger_tasks = {"drain": drain_task, "sweep": sweep_task, "verify": verify_task,
                        "webhooks": webhooks_task, "bulk": bulk_task}  # type: ignore[attr-defined]
    return app


def _schedule(settings: WorkerSettings, drain_expires_s: float) -> dict:
    schedule = {
        f"drain-{i}": {"task": "ledger.worker.drain", "schedule": timedelta(seconds=settings.drain_run_s),
                       "options": {"expires": drain_expires_s}}
        for i in range(settings.drainers)
    }
    # No sweep here: every worker process sweeps in a thread of its own (start_sweeper) every sweep_every_s, beat or
    # not; a task as well would only cost a message through the broker (beat's publish, the consumer's receive and
    # ack) every sweep_every_s: half the messages of an idle worker. The task stays, for `celery call ledger.worker.sweep`.
    schedule["webhooks"] = {"task": "ledger.worker.webhooks", "schedule": timedelta(seconds=settings.webhook_run_s),
                            "options": {"expires": settings.webhook_run_s}}
    schedule["bulk"] = {"task": "ledger.worker.bulk", "schedule": timedelta(seconds=settings.bulk_run_s),
                        "options": {"expires": settings.bulk_run_s}}
    if settings.verify_every_s > 0:
        schedule["verify"] = {"task": "ledger.worker.verify", "schedule": timedelta(seconds=settings.verify_every_s),
                              "options": {"expires": settings.verify_every_s}}
    return schedule
