"""Postings with Idempotency-Keys: CPU per posting in the cell's process and in PostgreSQL, with the first answers
stored by group commit (cell.service.idempotency.ResponseStore) against one statement per answer, side by side.

Calls the service layer in this process (`concurrency` postings at once, hybrid mode, no HTTP), so the client's
CPU is this process's; PostgreSQL's is its process tree's, from /proc. The two stores alternate in short windows
(neighbours' load on the shared cores hits both); the medians and their ratios are printed.

    python -m loadtests.idempotent_writes --duration 24 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
import psutil

from cell.ledger.commands import TransactionCreate
from cell.service.context import AccountCache, CellContext
from cell.service.idempotency import ResponseStore, idempotency_key
from cell.service.transactions import create_transaction
from cell.settings import CellSettings
from cell.store import idempotency as store_idempotency
from cell.store.db import create_pool
from control_plane.devstack import EmbeddedPostgres, remove_tree
from loadtests.bench import TENANT, account_uuid, setup_books

ACCOUNTS = 1000
WINDOWS = 6  # alternating: three of each store


class OneStatementEach:
    """The reference: every answer in a statement (and a commit) of its own."""

    def __init__(self, pool) -> None:
        self.pool = pool

    async def store(self, tenant_id: str, key: str, status: int, body: bytes) -> None:
        await store_idempotency.store_responses(self.pool, [(tenant_id, key, status, body)])


def _cpu_s(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


async def _window(ctx: CellContext, ledger_id: str, seconds: float, concurrency: int, postgres) -> dict:
    done = 0

    async def poster(deadline: float) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            a, b = random.sample(range(1, ACCOUNTS + 1), 2)
            raw = msgspec.json.encode({"ledger_id": ledger_id, "status": "posted", "ledger_entries": [
                {"ledger_account_id": account_uuid(a), "direction": "debit", "amount": 100},
                {"ledger_account_id": account_uuid(b), "direction": "credit", "amount": 100}]})
            idem = idempotency_key(uuid.uuid4().hex, "POST", "/api/ledger_transactions", raw, 255)
            await create_transaction(ctx, TENANT, msgspec.json.decode(raw, type=TransactionCreate), idem)
            done += 1

    tree = [postgres, *postgres.children(recursive=True)]
    before, pg_before, started = resource.getrusage(resource.RUSAGE_SELF), _cpu_s(tree), time.monotonic()
    await asyncio.gather(*[poster(started + seconds) for _ in range(concurrency)])
    after, elapsed = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - started
    pg_s = _cpu_s(tree) - pg_before  # the pool's connections are all open before: no backend is born meanwhile
    client_s = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"per_s": done / elapsed, "client_us": client_s * 1e6 / max(1, done), "postgresql_us": pg_s * 1e6 / max(1, done)}


async def run(duration_s: float = 24.0, concurrency: int = 16, **_ignored) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ledger-idem-"))
    pg = EmbeddedPostgres(workdir / "pg").start()  # fsync on: commits cost what they cost in production
    try:
        url = pg.create_database("bench")
        ledger_id, _ = await setup_books(url, ACCOUNTS)
        pool = await create_pool(url, min_size=12, max_size=12)
        postgres = psutil.Process(int((workdir / "pg" / "postmaster.pid").read_text().split()[0]))
        settings = CellSettings(database_url=url, posting_mode="hybrid")
        stores = {"group_commit": ResponseStore(pool), "one_statement_each": OneStatementEach(pool)}
        rows: dict[str, list[dict]] = {name: [] for name in stores}
        print(f"# idempotent writes: {concurrency} postings at once with keys, {WINDOWS} alternating windows of "
              f"{duration_s / WINDOWS:.0f}s, fsync on")
        warm = CellContext(settings=settings, pool=pool, cache=AccountCache(ACCOUNTS * 2), responses=stores["group_commit"])
        await _window(warm, ledger_id, 1.0, concurrency, postgres)  # caches, plans, the pool: not measured
        for i in range(WINDOWS):
            name = list(stores)[i % 2]
            ctx = CellContext(settings=settings, pool=pool, cache=AccountCache(ACCOUNTS * 2), responses=stores[name])
            rows[name].append(await _window(ctx, ledger_id, duration_s / WINDOWS, concurrency, postgres))
        await pool.close()
        results = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in rows.items()}
        for name, r in results.items():
            print(f"{name:20s} {r['per_s']:6.0f} postings/s  client {r['client_us']:5.0f} us/posting  "
                  f"postgresql {r['postgresql_us']:5.0f} us/posting")
        g, o = results["group_commit"], results["one_statement_each"]
        results["ratios"] = {"client": g["client_us"] / o["client_us"], "postgresql": g["postgresql_us"] / o["postgresql_us"],
                             "throughput": g["per_s"] / o["per_s"]}
        r = results["ratios"]
        print(f"# group commit / one statement each: client CPU {r['client']:.2f}, PostgreSQL CPU {r['postgresql']:.2f}, "
              f"throughput {r['throughput']:.2f}")
        return results
    finally:
        pg.stop()
        remove_tree(workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=24.0, help="seconds in all (split into the windows)")
    parser.add_argument("--concurrency", type=int, default=16, help="postings at once")
    args = parser.parse_args()
    asyncio.run(run(args.duration, args.concurrency))


if __name__ == "__main__":
    main()
