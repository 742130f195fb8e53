"""Worker fixtures: a migrated cell database, an SQS queue per test on the moto server, a pool, and a
factory of `python -m worker` subprocesses (all stopped at the end of the test)."""

from __future__ import annotations

import os
import uuid

import msgspec
import pytest
from worker_helpers import WorkerProcess

from cell.store.db import create_pool
from worker.settings import load_settings
from worker.sqs import SqsQueue


@pytest.fixture(scope="session")
def worker_database_url(make_database):
    return make_database("worker_test")


@pytest.fixture(scope="session")
async def pool(worker_database_url):
    pool = await create_pool(worker_database_url, min_size=1, max_size=12, role="ledger_worker")  # as workers run
    yield pool
    await pool.close()


@pytest.fixture
def sqs_queue(sqs_endpoint_url):
    """A fresh queue on the moto server; short visibility so a crashed worker's message returns quickly."""
    name = "q-" + uuid.uuid4().hex[:12]
    settings = load_settings({}, sqs_endpoint_url=sqs_endpoint_url, cell_name=name,
                             visibility_timeout_s=2, long_poll_s_max=0, batch_wait_ms_max=20)
    queue = SqsQueue(settings)
    queue.ensure()
    queue.settings = msgspec.structs.replace(settings, sqs_queue_url=queue.url)
    yield queue
    queue.client.delete_queue(QueueUrl=queue.url)


@pytest.fixture
def worker_process(tmp_path, worker_database_url, redis_url, sqs_endpoint_url):
    """Start worker processes for a queue: start(queue, **WORKER_ env overrides). All stopped at the end."""
    started: list[WorkerProcess] = []

    def start(queue: SqsQueue, **env_overrides) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKER_", "LEDGER_"))}
        env.update({
            "WORKER_CELL_NAME": queue.settings.cell_name, "WORKER_DATABASE_URL": worker_database_url,
            "WORKER_BROKER_URL": redis_url, "WORKER_SQS_ENDPOINT_URL": sqs_endpoint_url,
            "WORKER_SQS_QUEUE_URL": queue.url, "WORKER_VISIBILITY_TIMEOUT_S": "2", "WORKER_LONG_POLL_S_MAX": "1",
            "WORKER_DRAIN_RUN_S": "5", "WORKER_SWEEP_EVERY_S": "1", "WORKER_SWEEP_AFTER_S": "60",
            "WORKER_VERIFY_EVERY_S": "0", "WORKER_CONCURRENCY": "2", "WORKER_LOG_LEVEL": "INFO",
        })
        env.update({("WORKER_" + k.upper()): str(v) for k, v in env_overrides.items()})
        worker = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log").start()
        started.append(worker)
        return worker

    yield start
    for w in started:
        w.discard()
