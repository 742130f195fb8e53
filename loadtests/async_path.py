"""The async path alone, at a fixed posting rate: what the worker and the SQS endpoint cost per posting.

Postings go straight through the store (`ledger_post`, one card account against the shared settlement account, both
left unapplied: hybrid), each followed by the cell's own nudger (cell.service.nudge.SqsNudger) in this process; a
`python -m worker` (Celery, beat, sweeper, sealer) drains the embedded SQS endpoint and applies. The rate is fixed,
so the figures do not move with a neighbour's load on shared cores: CPU milliseconds per posting of the worker and
of the SQS endpoint (from /proc), SQS calls per second (the cell's sends, the worker's receives and deletes), and the
apply lag (posting to applied) from the database. No cell API: its cost is loadtests.hot_account's and stack_cpu's.

    python -m loadtests.async_path --rate 200 --duration 15 [--receive-every-ms 250] [--send-buffer-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import asyncpg

from cell.ledger.models import EntryRequest, Posting, TransactionState, VersionEntry
from cell.service.nudge import SqsNudger
from cell.store import transactions
from cell.store.db import create_pool
from control_plane.devstack import EmbeddedPostgres, EmbeddedSQS, EmbeddedValkey, remove_tree
from ledger_common.sqs import SQS_CALLS, make_sqs_client
from loadtests import httpload
from loadtests.hot_account import (
    RECEIVE_EVERY_MS,
    SEND_BUFFER_MS,
    SETTLEMENT,
    START_WAIT_S_MAX,
    TENANT,
    card_id,
    cpu_seconds,
    setup_books,
    sqs_calls,
    start_worker,
    wait_applied,
)

CARDS = 1000
WARMUP_S = 2.0
POOL_MAX = 8


def _own_sqs_calls() -> float:
    """SQS calls this process made (the nudger's sends)."""
    return sum(s.value for m in SQS_CALLS.collect() for s in m.samples if s.name.endswith("_total"))


async def _post(pool: asyncpg.Pool, nudger: SqsNudger, ledger_id: uuid.UUID) -> None:
    amount, card = random.randint(1, 50_000), card_id(random.randint(1, CARDS))
    sides = [(card, "debit"), (SETTLEMENT, "credit")]
    state = TransactionState(id=uuid.uuid4(), ledger_id=ledger_id, description=None, status="posted",
                             effective_at=datetime.now(timezone.utc), external_id=None, metadata={},
                             reverses_ledger_transaction_id=None,
                             ledger_entries=[VersionEntry(uuid.uuid4(), a, d, amount) for a, d in sides])
    async with pool.acquire() as conn:
        await transactions.post(conn, Posting(tenant_id=TENANT, state=state, apply_accounts=[],
                                              entries=[EntryRequest(str(a), d, amount) for a, d in sides]))
    await nudger.nudge(TENANT, [str(card), str(SETTLEMENT)])


async def _load(pool: asyncpg.Pool, nudger: SqsNudger, ledger_id: uuid.UUID, rate: float, seconds: float) -> int:
    """Open loop: a posting started every 1/rate s (a slow one does not hold the next back)."""
    started, count, tasks = time.monotonic(), int(rate * seconds), []
    for i in range(count):
        if (delay := started + i / rate - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_post(pool, nudger, ledger_id)))
    await asyncio.gather(*tasks)
    return count


async def run(duration_s: float = 15.0, concurrency: int = 0, rate: float = 200.0,
              receive_every_ms: int = RECEIVE_EVERY_MS, send_buffer_ms: int = SEND_BUFFER_MS, **_ignored) -> dict:
    """`concurrency` is not used (the load is a fixed rate)."""
    workdir = Path(tempfile.mkdtemp(prefix="ledger-async-path-"))
    pg = EmbeddedPostgres(workdir / "pg").start()
    valkey = EmbeddedValkey(workdir / "valkey").start()
    sqs = EmbeddedSQS().start()
    try:
        url = pg.create_database("hot_hybrid")
        ledger_id = uuid.UUID((await setup_books(url, CARDS))[0])
        from worker.settings import load_settings
        from worker.sqs import SqsQueue

        queue_url = SqsQueue(load_settings({}, sqs_endpoint_url=sqs.url, cell_name="hot-hybrid")).ensure()
        worker = start_worker(url, valkey.url, sqs.url, queue_url, workdir, "hybrid",
                              receive_every_ms_min=receive_every_ms)
        nudger = SqsNudger(make_sqs_client(sqs.url, "us-east-1"), queue_url, send_buffer_ms)
        pool = await create_pool(url, min_size=POOL_MAX, max_size=POOL_MAX)
        conn = await asyncpg.connect(url)
        try:
            await _load(pool, nudger, ledger_id, rate, WARMUP_S)
            if await wait_applied(conn, START_WAIT_S_MAX) is None:
                raise RuntimeError(f"the worker applies nothing; see {workdir}/worker-hybrid.log")
            phase_start = await conn.fetchval("SELECT clock_timestamp()")
            roots = {"worker": worker.proc.pid, "sqs endpoint": sqs.pid}
            cpu_before, sends_before = cpu_seconds(roots), _own_sqs_calls()
            worker_calls_before, started = sqs_calls([worker.metrics_url]), time.monotonic()
            postings = await _load(pool, nudger, ledger_id, rate, duration_s)
            elapsed = time.monotonic() - started
            cpu_after, sends = cpu_seconds(roots), _own_sqs_calls() - sends_before
            worker_calls = sqs_calls([worker.metrics_url]) - worker_calls_before
            await wait_applied(conn, START_WAIT_S_MAX)
            lag = await conn.fetchval(
                "SELECT percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP"
                " (ORDER BY extract(epoch FROM applied_at - created_at)) FROM balance_effects WHERE created_at >= $1",
                phase_start)
        finally:
            await conn.close()
            await nudger.close()
            await pool.close()
            worker.stop()
    finally:
        sqs.stop()
        valkey.stop()
        pg.stop()
        remove_tree(workdir)
    out = {"rate": postings / elapsed, "receive_every_ms": receive_every_ms, "send_buffer_ms": send_buffer_ms,
           "cpu_ms_per_posting": {k: (cpu_after[k] - cpu_before[k]) * 1000 / postings for k in roots},
           "sends_per_s": sends / elapsed, "worker_calls_per_s": worker_calls / elapsed,
           "sqs_calls_per_posting": (sends + worker_calls) / postings,
           "apply_lag_ms": {"p50": lag[0] * 1000, "p90": lag[1] * 1000, "p99": lag[2] * 1000}}
    cpu, lags = out["cpu_ms_per_posting"], out["apply_lag_ms"]
    print(f"# async path: {out['rate']:.0f} postings/s for {duration_s:.0f}s, worker receive every "
          f"{receive_every_ms} ms, cell nudge window {send_buffer_ms} ms")
    print(f"CPU ms/posting: worker {cpu['worker']:.3f}  sqs endpoint {cpu['sqs endpoint']:.3f}; SQS calls/s: cell "
          f"sends {out['sends_per_s']:.1f}, worker {out['worker_calls_per_s']:.1f} ({out['sqs_calls_per_posting']:.4f} "
          f"a posting); apply lag p50 {lags['p50']:.0f} ms  p90 {lags['p90']:.0f} ms  p99 {lags['p99']:.0f} ms")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured")
    parser.add_argument("--rate", type=float, default=200.0, help="postings a second")
    parser.add_argument("--receive-every-ms", type=int, default=RECEIVE_EVERY_MS, help="the worker's receive interval")
    parser.add_argument("--send-buffer-ms", type=int, default=SEND_BUFFER_MS, help="the cell's nudge window")
    args = parser.parse_args()
    httpload.run(run(duration_s=args.duration, rate=args.rate, receive_every_ms=args.receive_every_ms,
                     send_buffer_ms=args.send_buffer_ms), loop_factory=None)


if __name__ == "__main__":
    main()
