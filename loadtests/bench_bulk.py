"""The bulk-request benchmark: 1,000 ledger transactions by one bulk request against 1,000 single POSTs, in one run.

One hybrid cell (`python -m cell`) and one worker (`python -m worker`, Celery + embedded SQS and Valkey) on a
fresh PostgreSQL (fsync on). Phase 1 posts N transactions one by one over HTTP from `concurrency` connections;
phase 2 sends the same N as one bulk request (POST /api/bulk_requests, processed by the worker). Each phase is
timed from its first request until every transaction exists and every balance effect is applied. Prints both
times and their ratio (the goal: bulk at least 5x faster).

    python -m loadtests.bench_bulk --concurrency 16 --transactions 1000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

from cell.store.verify import verify
from control_plane.devstack import EmbeddedPostgres, EmbeddedSQS, EmbeddedValkey, remove_tree
from loadtests import httpload
from loadtests.hot_account import TENANT, card_id, setup_books, start_cell, start_worker, wait_applied, SETTLEMENT

WAIT_S_MAX = 120
CARDS = 100


def transaction(i: int) -> dict:
    amount = random.randint(1, 50_000)
    return {"status": "posted", "external_id": f"bench-{i}", "ledger_entries": [
        {"ledger_account_id": str(card_id(random.randint(1, CARDS))), "direction": "debit", "amount": amount},
        {"ledger_account_id": str(SETTLEMENT), "direction": "credit", "amount": amount}]}


async def singles(client: httpx.AsyncClient, conn, n: int, concurrency: int, tag: str) -> float:
    """Seconds from the first POST until all n are created and applied."""
    gate = asyncio.Semaphore(concurrency)
    bodies = [transaction(i) | {"external_id": f"{tag}-single-{i}"} for i in range(n)]

    async def one(body: dict) -> None:
        async with gate:
            r = await client.post("/api/ledger_transactions", json=body)
            if r.status_code != 201:
                raise RuntimeError(f"POST answered {r.status_code}: {r.text[:300]}")

    started = time.monotonic()
    await asyncio.gather(*(one(b) for b in bodies))
    if await wait_applied(conn, WAIT_S_MAX) is None:
        raise RuntimeError("the single POSTs' effects were not applied in time")
    return time.monotonic() - started


async def bulk(client: httpx.AsyncClient, conn, n: int, tag: str) -> float:
    """Seconds from the POST of one bulk request of n until it is completed and every effect applied."""
    resources = [transaction(i) | {"external_id": f"{tag}-bulk-{i}"} for i in range(n)]
    started = time.monotonic()
    r = await client.post("/api/bulk_requests", json={"action_type": "create", "resource_type": "ledger_transaction",
                                                      "resources": resources})
    if r.status_code != 201:
        raise RuntimeError(f"POST /api/bulk_requests answered {r.status_code}: {r.text[:300]}")
    request_id = r.json()["id"]
    deadline = started + WAIT_S_MAX
    while True:
        body = (await client.get(f"/api/bulk_requests/{request_id}")).json()
        if body["status"] == "completed":
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the bulk request is still {body['status']} after {WAIT_S_MAX}s")
        await asyncio.sleep(0.02)
    if await wait_applied(conn, WAIT_S_MAX) is None:
        raise RuntimeError("the bulk request's effects were not applied in time")
    elapsed = time.monotonic() - started
    if body["success_result_count"] != n:
        raise RuntimeError(f"bulk request: {body['failed_result_count']} resources failed")
    return elapsed


async def run(duration_s: float = 10.0, concurrency: int = 16, transactions: int = 1000, **_ignored) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ledger-bulk-"))
    pg = EmbeddedPostgres(workdir / "pg").start()  # fsync on: commits cost what they cost in production
    valkey = EmbeddedValkey(workdir / "valkey").start()
    sqs = EmbeddedSQS().start()
    results: dict = {"transactions": transactions, "concurrency": concurrency}
    try:
        from worker.settings import load_settings
        from worker.sqs import SqsQueue

        url = pg.create_database("bulk_bench")
        _, secret = await setup_books(url, CARDS)
        queue_url = SqsQueue(load_settings({}, sqs_endpoint_url=sqs.url, cell_name="hot")).ensure()
        worker = start_worker(url, valkey.url, sqs.url, queue_url, workdir, "hybrid", bulk_poll_s=0.1)
        cell, port = start_cell(url, "hybrid", workdir, sqs.url, queue_url)
        conn = await asyncpg.connect(url)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", auth=(TENANT, secret), limits=limits,
                                         timeout=60) as client:
                await singles(client, conn, 50, concurrency, "warm")  # connections, caches, the worker
                await bulk(client, conn, 50, "warm")
                results["singles_s"] = await singles(client, conn, transactions, concurrency, "run")
                results["bulk_s"] = await bulk(client, conn, transactions, "run")
            results["violations"] = await verify(conn, TENANT)
        finally:
            await conn.close()
            cell.stop()
            worker.stop()
        results["ratio_singles_over_bulk"] = results["singles_s"] / results["bulk_s"]
        print(f"# bulk requests: {transactions} transactions, created and applied (hybrid cell, one worker, fsync on)")
        print(f"single POSTs ({concurrency} connections)  {results['singles_s']:.2f} s  "
              f"({transactions / results['singles_s']:.0f} tx/s)")
        print(f"one bulk request                  {results['bulk_s']:.2f} s  "
              f"({transactions / results['bulk_s']:.0f} tx/s)")
        print(f"# ratio (same run): bulk {results['ratio_singles_over_bulk']:.1f}x faster than single POSTs "
              f"(goal >= 5x); invariants: {'hold' if not results['violations'] else results['violations']}")
    finally:
        sqs.stop()
        valkey.stop()
        pg.stop()
        remove_tree(workdir)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16, help="client connections of the single POSTs")
    parser.add_argument("--transactions", type=int, default=1000)
    args = parser.parse_args()
    httpload.run(run(concurrency=args.concurrency, transactions=args.transactions), loop_factory=None)


if __name__ == "__main__":
    main()
