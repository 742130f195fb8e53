"""`python -m worker`: one cell's Celery worker with an embedded beat, configured from WORKER_/LEDGER_ env."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

import msgspec

from worker import metrics_server
from worker.app import create_celery, start_sealer, start_sequencer, start_sweeper
from worker.settings import load_settings
from worker.sqs import SqsQueue

log = logging.getLogger("worker")
QUEUE_WAIT_S_MAX = 30  # the embedded SQS endpoint may still be starting; later, failures log as errors
_worker_pid = os.getpid()  # this module runs in the worker process (`python -m worker`)


def _die_with_the_worker(sender=None, **kwargs) -> None:
    """In the beat child, which the worker forks for --beat: die with the worker, even a SIGKILLed one, rather
    than live on as an orphan that keeps sending tasks (beside the beat of the worker started in its place).
    SIGKILL: the schedule is in memory (worker/app.py), there is nothing to save."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != _worker_pid:  # the worker died before the prctl
        os._exit(1)


def main(argv: list[str] | None = None) -> None:
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # A line per task received/succeeded/scheduled (several a second) would drown what matters; httpx's per request
    # (each webhook delivery) would too, and it names the customer's whole URL (a token in its query: a secret).
    for chatty in ("celery.app.trace", "celery.worker.strategy", "celery.beat", "httpx"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))
    if not settings.database_url:
        sys.exit("WORKER_DATABASE_URL (or LEDGER_DATABASE_URL) is required")
    if settings.metrics_port:
        metrics_server.start(settings.metrics_port, settings.metrics_host)
    # First the sweeper: it needs only PostgreSQL, so effects are applied even while SQS or Redis is down.
    start_sweeper(settings)
    start_sequencer(settings)
    start_sealer(settings)
    queue = SqsQueue(settings)
    started = time.monotonic()
    while True:
        try:
            queue.ensure()
            break
        except Exception as exc:  # noqa: BLE001 - retried forever: exiting would stop the sweeper too
            level = logging.ERROR if time.monotonic() - started > QUEUE_WAIT_S_MAX else logging.WARNING
            log.log(level, "SQS queue not reachable (%s); retrying (the sweeper applies meanwhile)", exc)
            time.sleep(1)
    settings = msgspec.structs.replace(settings, sqs_queue_url=queue.url)
    queue.settings = settings
    app = create_celery(settings, queue)
    args = ["worker", "--pool", "threads", "--concurrency", str(settings.concurrency),
            "--queues", settings.celery_queue, "--loglevel", settings.log_level,
            "--hostname", f"{settings.cell_name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    if settings.beat:
        from celery.signals import beat_embedded_init

        beat_embedded_init.connect(_die_with_the_worker, weak=False)
        args.append("--beat")
    log.info("worker for %s: queue %s, database %s", settings.cell_name, queue.url,
             settings.database_url.rsplit("@", 1)[-1])
    app.worker_main(args + list(argv if argv is not None else sys.argv[1:]))


if __name__ == "__main__":
    main()
