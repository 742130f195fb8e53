"""The hot-account benchmark: card payments that all credit one settlement account, sync vs hybrid in one run.

Each posting debits one of many card accounts and credits the one shared settlement account, through the
cell's HTTP API. Both modes run the stack `make run` deploys for a cell (one cell process, its worker with beat,
sealer and sweeper, its PostgreSQL; Valkey and the SQS endpoint shared) under the same closed-loop load; only
the posting mode differs. Both stacks are up at once and their measured windows alternate (ABBA), so a
neighbour's load on shared cores hits both alike. In `sync` mode every posting updates the settlement balance row
under its lock, so postings serialise on that row; in `hybrid` mode the postings only queue balance effects and
the worker folds them in batches, so throughput is bounded by CPU (on a 2-core box, by the whole stack's CPU per
posting). Prints each window and the medians per mode: transactions/s, p50/p99 write latency, CPU milliseconds per
posting of each component (from /proc; PostgreSQL's also split by whom it served: the cell's backends, the worker's
(its apply, and the sealer, sequencer and sweeper), the rest), SQS calls per posting, the WAL a posting costs
(bytes, records, full-page images: what the server writes and copies into the page cache); for hybrid the apply lag
(posting to applied) p50/p90/p99 from the database; then the ratios (throughput: the median of each round's adjacent
windows), and the same workload straight to PostgreSQL (pgbench) for the database tier's own ratio.

    python -m loadtests.hot_account --duration 10 [--rounds 3] [--concurrency 64] [--wal-tables] [--steady-wal]

`--wal-tables` also reads each window's WAL back (pg_walinspect, after the window) and prints the bytes a posting
writes to each table and index, the largest first: where the WAL volume comes from.

`--steady-wal` measures a server that has run a while: a fresh one has no WAL segment to reuse before its first
checkpoint and zero-fills a new 16 MB one for each 16 MB the load writes (every ~0.6 s of the hybrid side), where a
server in service writes into recycled ones. With it every mode's server keeps its WAL for reuse (STEADY_WAL_SETTINGS)
and, before the windows, writes STEADY_WAL_ROWS of a throwaway table and checkpoints twice, so that the windows write
into recycled segments: each window prints the new segments it made (0 when steady). A mode's suffix `_steadywal`
does the same for that mode alone (`--modes hybrid,hybrid_steadywal`: fresh against steady in one run).

`--modes hybrid,hybrid_noevents` measures what events cost a posting (CELL_EVENTS_ENABLED=false for the second: no
event rows, nothing for the sequencer). `--modes hybrid,hybrid_nogroup` compares hybrid with and without group
commit (CELL_POSTING_GROUP_MAX=1 for the second; cell/service/posting_groups.py) in alternating windows of one run:
the ratio of each round's adjacent windows and the CPU per posting of each component (`--modes
sync,hybrid,hybrid_nogroup`: both against sync too; `--modes sync,hybrid,sync_nogroup`: sync postings grouped and
not, and hybrid against both). `--locked` makes the payments card authorizations: each card's debit under a balance
lock, applied in its posting (`hybrid,hybrid_nogroup --locked`: balance-locked postings grouped and not;
`--declines 0.1`: a tenth of them declined, as card issuers see).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import psutil

from cell.settings import CellSettings
from cell.store.verify import verify
from control_plane.devstack import (
    EmbeddedPostgres,
    EmbeddedSQS,
    EmbeddedValkey,
    free_port,
    remove_tree,
)
from loadtests import httpload
from loadtests.bench import pgbench_account, pgbench_run, posting_sql, seed_books, wait_ready
from loadtests.httpload import run_load
from loadtests.monitor import scrape
from loadtests.pg_split import wal
from worker.settings import WorkerSettings

TENANT = "hot"
SETTLEMENT = uuid.UUID("00000000-0000-4000-8000-000000000000")
DRAIN_WAIT_S_MAX = 60  # after the load, the backlog must be applied within this (else reported, not hidden)
START_WAIT_S_MAX = 30
SQS_CALLS_METRIC = "ledger_sqs_calls_total"
# What ships: the cell's nudge window and the worker's batch wait (fewer, fuller SQS calls; see their settings).
SEND_BUFFER_MS = CellSettings().sqs_send_buffer_ms_max
BATCH_WAIT_MS = WorkerSettings().batch_wait_ms_max
RECEIVE_EVERY_MS = WorkerSettings().receive_every_ms_min
MODES = ("sync", "hybrid")
# A mode's name is its posting mode, and for a variant a suffix: `_nogroup`, without group commit; `_noevents`,
# without events.
VARIANTS = {"": {}, "nogroup": {"CELL_POSTING_GROUP_MAX": "1"}, "noevents": {"CELL_EVENTS_ENABLED": "false"},
            "steadywal": {}}
# `--steady-wal`: WAL segments kept for reuse after a checkpoint (up to min_wal_size), and what is written to have
# them: ~1.4 GB of WAL, more than the hybrid side's windows write in a run of three 10 s rounds (~25 MB/s).
STEADY_WAL_SETTINGS = {"min_wal_size": "2GB", "max_wal_size": "4GB"}
STEADY_WAL_ROWS = 1_500_000
ROUNDS = 3  # windows per mode, alternating: medians
# What a hot account sees: the connections of the mix (an omnibus account written by every investor).
CONNECTIONS = 64
CARD_LIMIT = 10**15  # a card's credit limit under `--locked`
WAL_TABLES_SHOWN = 8


async def recycle_wal(pg: EmbeddedPostgres) -> int:
    """Give a fresh server (started with STEADY_WAL_SETTINGS) WAL segments to reuse, as one in service has: write
    STEADY_WAL_ROWS rows (~1 kB each) and drop them, with a checkpoint after each, so that the segments written are
    recycled rather than removed. The segments in pg_wal after it."""
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute("CREATE TABLE steady_wal AS SELECT g, repeat('x', 900) AS x"
                           f" FROM generate_series(1, {int(STEADY_WAL_ROWS)}) g")  # (no parameters in CREATE TABLE AS)
        await conn.execute("CHECKPOINT")
        await conn.execute("DROP TABLE steady_wal")
        await conn.execute("CHECKPOINT")
        return await conn.fetchval("SELECT count(*) FROM pg_ls_waldir()")
    finally:
        await conn.close()


def card_id(i: int) -> uuid.UUID:
    return uuid.UUID(f"00000000-0000-4000-8000-{i:012d}")


async def setup_books(url: str, cards: int) -> tuple[str, str]:
    """A tenant and key, a ledger, `cards` debit-normal card accounts and the credit-normal settlement."""
    return await seed_books(url, TENANT, "hot-account benchmark", "cards", [(SETTLEMENT, "settlement", "credit")] + [
        (card_id(i), f"card {i}", "debit") for i in range(1, cards + 1)])


def payment_request(ledger_id: str, cards: int, locked: float | None = None):
    """A card payment; `locked` (not None): a card authorization, its card's debit under a balance lock (its credit
    limit, never reached here), so applied in the posting (sync), the settlement's credit still async in hybrid mode;
    that fraction of them declined (a limit the card is over: 422, nothing written)."""
    lock = {"available_balance_amount": {"lte": CARD_LIMIT}}
    over = {"available_balance_amount": {"lte": -1}}

    def write():
        amount = random.randint(1, 50_000)
        condition = {} if locked is None else over if random.random() < locked else lock
        body = json.dumps({"ledger_id": ledger_id, "status": "posted", "ledger_entries": [
            {"ledger_account_id": str(card_id(random.randint(1, cards))), "direction": "debit", "amount": amount,
             **condition},
            {"ledger_account_id": str(SETTLEMENT), "direction": "credit", "amount": amount}]}).encode()
        return "POST", "/api/ledger_transactions", body

    return {"write": write}


class Process:
    """A child process in its own session, stopped by its pid."""

    metrics_url = ""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def start_cell(database_url: str, mode: str, workdir: Path, sqs_endpoint: str = "", queue_url: str = "",
               send_buffer_ms: int = 5) -> tuple[Process, int]:
    """The cell of `mode` (a posting mode, or one with a variant's suffix: VARIANTS)."""
    port, metrics_port = free_port(), free_port()
    posting_mode, _, variant = mode.partition("_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELL_", "LEDGER_", "WORKER_"))}
    env.update({"CELL_DATABASE_URL": database_url, "CELL_PORT": str(port), "CELL_METRICS_PORT": str(metrics_port),
                "CELL_POSTING_MODE": posting_mode, **VARIANTS[variant],
                "CELL_DB_POOL_MAX": "12", "CELL_NAME": f"hot-{mode}", "CELL_SQS_ENDPOINT_URL": sqs_endpoint,
                "CELL_SQS_QUEUE_URL": queue_url, "CELL_SQS_SEND_BUFFER_MS_MAX": str(send_buffer_ms),
                "CELL_PROCESSES": os.environ.get("HOT_CELL_PROCESSES", "1")})
    cell = Process([sys.executable, "-m", "cell"], env, workdir / f"cell-{mode}.log")
    cell.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    wait_ready(port, cell.proc, cell.stop, f"the {mode} cell did not start; see {workdir}/cell-{mode}.log",
               START_WAIT_S_MAX)
    return cell, port


def start_worker(database_url: str, broker_url: str, sqs_endpoint: str, queue_url: str, workdir: Path, mode: str,
                 **settings) -> Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELL_", "LEDGER_", "WORKER_"))}
    metrics_port = free_port()
    env.update({"WORKER_CELL_NAME": f"hot-{mode}", "WORKER_POSTING_MODE": mode.partition("_")[0],
                "WORKER_METRICS_PORT": str(metrics_port), "WORKER_DATABASE_URL": database_url,
                "WORKER_BROKER_URL": broker_url,
                "WORKER_SQS_ENDPOINT_URL": sqs_endpoint, "WORKER_SQS_QUEUE_URL": queue_url,
                "WORKER_LOG_LEVEL": "WARNING", "WORKER_VERIFY_EVERY_S": "0"})
    env.update({"WORKER_" + k.upper(): str(v) for k, v in settings.items()})
    worker = Process([sys.executable, "-m", "worker"], env, workdir / f"worker-{mode}.log")
    worker.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    return worker


async def wait_applied(conn: asyncpg.Connection, timeout_s: float) -> float | None:
    """Seconds until no effect is left unapplied, or None if some still are after timeout_s."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await conn.fetchval("SELECT count(*) FROM balance_effects WHERE applied_at IS NULL") == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    return None


def cpu_seconds(roots: dict[str, int | None]) -> dict[str, float]:
    """User + system CPU seconds of each component's process tree (its root pid and every descendant); the
    load generator is this process."""
    out = {"load generator": time.process_time()}
    for name, pid in roots.items():
        if pid is None:
            continue
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        total = 0.0
        for p in tree:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        out[name] = total
    return out


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def postgres_cpu_seconds(pg_pid: int, clients: dict[str, int]) -> dict[int, tuple[str, float]]:
    """Each PostgreSQL process's CPU seconds, named by whom it serves: a backend by the client process tree
    (`clients`: name -> root pid) that holds the other end of its TCP connection, every other process (autovacuum,
    WAL writer, checkpointer, a backend of neither) 'other'. Keyed by pid, to be diffed over a window."""
    ports = {}
    for name, pid in clients.items():
        for proc in _tree(pid):
            try:
                ports.update({c.laddr.port: name for c in proc.net_connections(kind="tcp") if c.laddr})
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
    out = {}
    for proc in _tree(pg_pid)[1:]:
        try:
            title, t = " ".join(proc.cmdline()), proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        port = title.rsplit("(", 1)[-1].split(")", 1)[0] if "(" in title else ""
        out[proc.pid] = (ports.get(int(port), "other") if port.isdigit() else "other", t.user + t.system)
    return out


def postgres_split_ms(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                      postings: int) -> dict[str, float]:
    """PostgreSQL's CPU milliseconds per posting by whom it served, over a window (processes alive at its end)."""
    split: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        split[name] = split.get(name, 0.0) + (cpu - before.get(pid, (name, 0.0))[1]) * 1000 / postings
    return split


def sqs_calls(metrics_urls: list[str]) -> float:
    """SQS API calls the processes behind these metrics endpoints have made (ledger_sqs_calls_total)."""
    return sum(v for url in metrics_urls for k, v in scrape(url).items() if k.startswith(SQS_CALLS_METRIC))


async def wal_position(conn: asyncpg.Connection) -> dict:
    """The server's WAL insert position and its counters (pg_split.wal: every database of the server)."""
    return {"lsn": await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text"), **await wal(conn)}


async def wal_by_table(conn: asyncpg.Connection, start: str, end: str, postings: int) -> dict[str, float]:
    """The WAL bytes per posting each table or index was written with between two positions (each record counted
    once, for the relation of its first block; records of no relation, e.g. commits, left out)."""
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    rows = await conn.fetch(
        "WITH r AS (SELECT DISTINCT ON (start_lsn) start_lsn, relfilenode, record_length "
        "           FROM pg_get_wal_block_info($1::text::pg_lsn, $2::text::pg_lsn) ORDER BY start_lsn, block_id) "
        "SELECT coalesce(c.relname, r.relfilenode::text) AS name, sum(r.record_length) AS bytes "
        "FROM r LEFT JOIN pg_class c ON c.relfilenode = r.relfilenode GROUP BY 1 ORDER BY 2 DESC", start, end)
    return {r["name"]: float(r["bytes"]) / postings for r in rows}


async def measure(port: int, secret: str, ledger_id: str, cards: int, duration_s: float, concurrency: int,
                  roots: dict[str, int | None] | None = None, metrics_urls: list[str] = (), locked: float | None = None,
                  conn: asyncpg.Connection | None = None, wal_tables: bool = False) -> dict:
    """The load for duration_s; with `roots`, also the CPU milliseconds per posting of each component (a backend
    that ended inside the window is not counted: the cell's pool keeps its connections), and the SQS calls per
    posting of the processes behind `metrics_urls`; with `conn` (to the mode's own server), the WAL per posting,
    and with `wal_tables` its bytes by table."""
    roots = roots or {}
    pg_clients = {k: v for k, v in roots.items() if k in ("cell", "worker") and v is not None}
    pg_pid = roots.get("postgresql")
    pg_before = postgres_cpu_seconds(pg_pid, pg_clients) if pg_pid else {}
    before, calls_before = cpu_seconds(roots), sqs_calls(list(metrics_urls))
    wal_before = await wal_position(conn) if conn is not None else None
    stats = await run_load("127.0.0.1", port, (TENANT, secret), duration_s=duration_s,
                           workers=[("write", concurrency)], make_request=payment_request(ledger_id, cards, locked))
    wal_after = await wal_position(conn) if conn is not None else None
    after, calls_after = cpu_seconds(roots), sqs_calls(list(metrics_urls))
    pg_after = postgres_cpu_seconds(pg_pid, pg_clients) if pg_pid else {}
    summary = stats["write"].summary(duration_s)
    postings = max(1, summary["statuses"].get(201, 0))
    if wal_before is not None:
        summary["wal_per_posting"] = {k: float(wal_after[k] - wal_before[k]) / postings
                                      for k in ("wal_bytes", "wal_records", "wal_fpi")}
        summary["wal_segments_created"] = float(wal_after["wal_segments_created"] - wal_before["wal_segments_created"])
        if wal_tables:
            summary["wal_bytes_per_posting_by_table"] = await wal_by_table(conn, wal_before["lsn"], wal_after["lsn"],
                                                                           postings)
    if roots:
        summary["cpu_ms_per_posting"] = {k: (after[k] - before.get(k, 0.0)) * 1000 / postings for k in after}
        summary["cpu_cores"] = sum(after[k] - before.get(k, 0.0) for k in after) / duration_s
        summary["sqs_calls_per_posting"] = (calls_after - calls_before) / postings
        if pg_pid:
            summary["postgresql_ms_per_posting"] = postgres_split_ms(pg_before, pg_after, postings)
    return summary


async def database_tier(pgs: dict[str, EmbeddedPostgres], ledger_ids: dict[str, str], cards: int,
                        duration_s: float, concurrency: int, workdir: Path) -> dict:
    """The same workload written straight to PostgreSQL (pgbench, one ledger_post call per posting): what the
    database tier allows once the HTTP tier is not the limit. In hybrid, an applier folds the queue in batches
    concurrently (as the worker does), so applying costs CPU in the same measurement."""
    card = pgbench_account("c")
    settlement = f"'{SETTLEMENT}'::uuid"
    out: dict = {}
    for mode in ("sync", "hybrid"):
        apply = f"ARRAY[{card}, {settlement}]" if mode == "sync" else "'{}'::uuid[]"
        script = f"\\set c random(1, {cards})\n" + posting_sql(ledger_ids[mode], card, settlement, apply, TENANT)
        dbname, pg = f"hot_{mode}", pgs[mode]
        conn = await asyncpg.connect(pg.database_url(dbname))
        stop = asyncio.Event()

        async def applier() -> None:
            own = await asyncpg.connect(pg.database_url(dbname))
            try:
                while not stop.is_set():
                    accounts = await own.fetchval("SELECT coalesce(array_agg(DISTINCT account_id), '{}') "
                                                  "FROM balance_effects WHERE applied_at IS NULL")
                    if accounts:
                        await own.fetchrow("SELECT * FROM ledger_apply_report($1::uuid[], true)", accounts)
                    else:
                        await asyncio.sleep(0.02)
            finally:
                await own.close()

        task = asyncio.create_task(applier()) if mode == "hybrid" else None
        try:
            out[mode] = await asyncio.to_thread(pgbench_run, pg, dbname, script, concurrency, duration_s, workdir)
            if task is not None:
                started = time.monotonic()
                while await conn.fetchval("SELECT count(*) FROM balance_effects WHERE applied_at IS NULL"):
                    await asyncio.sleep(0.05)
                out[mode]["backlog_drained_s"] = time.monotonic() - started
        finally:
            stop.set()
            if task is not None:
                await task
            out[mode]["violations"] = await verify(conn, TENANT)
            await conn.close()
    out["ratio"] = out["hybrid"]["per_s"] / out["sync"]["per_s"]
    return out


class ModeStack:
    """One mode's cell process and worker (with beat, sealer, sweeper) on its own database, as `make run` deploys a
    cell; both modes share PostgreSQL, Valkey and the SQS endpoint, and only CELL_POSTING_MODE differs."""

    def __init__(self, mode: str, pg: EmbeddedPostgres, url: str, ledger_id: str, secret: str, worker: Process,
                 cell: Process, port: int) -> None:
        self.mode, self.pg, self.url, self.ledger_id, self.secret = mode, pg, url, ledger_id, secret
        self.worker, self.cell, self.port = worker, cell, port

    def stop(self) -> None:
        self.cell.stop()
        self.worker.stop()


async def start_mode(mode: str, pg: EmbeddedPostgres, valkey: EmbeddedValkey, sqs: EmbeddedSQS, workdir: Path, *,
                     cards: int, send_buffer_ms: int, batch_wait_ms: int, receive_every_ms: int) -> ModeStack:
    url = pg.create_database(f"hot_{mode}")
    ledger_id, secret = await setup_books(url, cards)
    from worker.settings import load_settings
    from worker.sqs import SqsQueue

    queue_url = SqsQueue(load_settings({}, sqs_endpoint_url=sqs.url, cell_name=f"hot-{mode}")).ensure()
    worker = start_worker(url, valkey.url, sqs.url, queue_url, workdir, mode, batch_wait_ms_max=batch_wait_ms,
                          receive_every_ms_min=receive_every_ms)
    try:
        cell, port = start_cell(url, mode, workdir, sqs.url, queue_url, send_buffer_ms)
    except Exception:
        worker.stop()
        raise
    return ModeStack(mode, pg, url, ledger_id, secret, worker, cell, port)


async def window(m: ModeStack, valkey: EmbeddedValkey, sqs: EmbeddedSQS, conn: asyncpg.Connection, *, cards: int,
                 duration_s: float, concurrency: int, locked: float | None = None, wal_tables: bool = False) -> dict:
    """One measured window of one mode: the load's summary, CPU per posting by component, SQS calls and WAL per
    posting."""
    return await measure(m.port, m.secret, m.ledger_id, cards, duration_s, concurrency,
                         {"cell": m.cell.proc.pid, "postgresql": m.pg.pid, "worker": m.worker.proc.pid,
                          "sqs endpoint": sqs.pid, "valkey": valkey.pid},
                         [m.cell.metrics_url, m.worker.metrics_url], locked, conn, wal_tables)


async def queue_report(conn: asyncpg.Connection, since) -> dict:
    """After the windows: the backlog, how long it took to apply, the apply lag of every effect since `since`."""
    backlog = await conn.fetchval("SELECT count(*) FROM balance_effects WHERE applied_at IS NULL")
    drained_s = await wait_applied(conn, DRAIN_WAIT_S_MAX)
    lag = await conn.fetchrow(
        "SELECT count(*) AS n, percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP"
        " (ORDER BY extract(epoch FROM applied_at - created_at)) AS q,"
        " max(extract(epoch FROM applied_at - created_at)) AS worst"
        " FROM balance_effects WHERE created_at >= $1 AND applied_at IS NOT NULL", since)
    settlement_applies = await conn.fetchval(
        "SELECT count(*) FROM (SELECT DISTINCT date_trunc('milliseconds', applied_at) FROM balance_effects"
        " WHERE account_id = $1 AND created_at >= $2) s", SETTLEMENT, since)
    q = lag["q"] or [float("nan")] * 3
    return {"apply_lag_p50_ms": q[0] * 1000, "apply_lag_p90_ms": q[1] * 1000, "apply_lag_p99_ms": q[2] * 1000,
            "apply_lag_max_ms": (lag["worst"] or 0) * 1000, "effects": lag["n"], "backlog_at_end": backlog,
            "backlog_drained_s": drained_s, "settlement_applies": settlement_applies,
            "violations": await verify(conn, TENANT)}


def median_window(windows: list[dict]) -> dict:
    """Medians over a mode's windows: throughput, latencies, CPU per posting of each component, SQS calls."""
    med = statistics.median

    def medians(key: str) -> dict[str, float]:  # of a per-posting dict (a name missing in a window counts 0)
        names = {k for w in windows for k in w.get(key, {})}
        return {k: med(w.get(key, {}).get(k, 0.0) for w in windows) for k in names}

    return {"per_s": med(w["per_s"] for w in windows), "p50_ms": med(w["p50_ms"] for w in windows),
            "p99_ms": med(w["p99_ms"] for w in windows),
            "statuses": {k: sum(w["statuses"].get(k, 0) for w in windows) for w in windows for k in w["statuses"]},
            "cpu_ms_per_posting": {k: med(w["cpu_ms_per_posting"][k] for w in windows)
                                   for k in windows[0]["cpu_ms_per_posting"]},
            "cpu_cores": med(w["cpu_cores"] for w in windows),
            "sqs_calls_per_posting": med(w["sqs_calls_per_posting"] for w in windows),
            **{key: medians(key) for key in ("postgresql_ms_per_posting", "wal_per_posting",
                                             "wal_bytes_per_posting_by_table") if key in windows[0]},
            **({"wal_segments_created": med(w["wal_segments_created"] for w in windows)}
               if "wal_segments_created" in windows[0] else {})}


async def _windows(results: dict, stacks: dict, conns: dict, pgs, valkey, sqs, workdir: Path, *, modes, cards: int,
                   duration_s: float, warmup_s: float, concurrency: int, rounds: int, send_buffer_ms: int,
                   batch_wait_ms: int, receive_every_ms: int, locked: float | None = None,
                   wal_tables: bool = False) -> None:
    """Start every mode's stack, warm each up, then `rounds` windows per mode, alternating; medians per mode and
    the queue's report into `results`."""
    for mode in modes:
        # sync: every posting locks and updates the settlement row; hybrid: postings only queue effects and the
        # worker applies them in batches.
        stacks[mode] = await start_mode(mode, pgs[mode], valkey, sqs, workdir, cards=cards,
                                        send_buffer_ms=send_buffer_ms, batch_wait_ms=batch_wait_ms,
                                        receive_every_ms=receive_every_ms)
        conns[mode] = await asyncpg.connect(stacks[mode].url)
    for mode, m in stacks.items():
        await measure(m.port, m.secret, m.ledger_id, cards, warmup_s, concurrency, locked=locked)
        if await wait_applied(conns[mode], START_WAIT_S_MAX) is None:
            raise RuntimeError(f"the {mode} worker applies nothing; see {workdir}/worker-{mode}.log")
    since = {mode: await conns[mode].fetchval("SELECT clock_timestamp()") for mode in modes}
    windows: dict[str, list[dict]] = {mode: [] for mode in modes}
    for i in range(rounds):
        for mode in (modes if i % 2 == 0 else tuple(reversed(modes))):
            windows[mode].append(await window(stacks[mode], valkey, sqs, conns[mode], cards=cards,
                                              duration_s=duration_s, concurrency=concurrency, locked=locked,
                                              wal_tables=wal_tables))
            print(f"{mode:7s} {_fmt(windows[mode][-1])}")
    for mode in modes:
        results[mode] = {**median_window(windows[mode]), "windows": windows[mode],
                         **await queue_report(conns[mode], since[mode])}
        print(f"median  {mode:7s} {_fmt(results[mode])}")
    results["violations"] = [v for mode in modes for v in results[mode]["violations"]]
    for mode in (m for m in modes if m.startswith("hybrid")):
        h = results[mode]
        print(f"{mode}  apply lag p50 {h['apply_lag_p50_ms']:.0f} ms  p90 {h['apply_lag_p90_ms']:.0f} ms  "
              f"p99 {h['apply_lag_p99_ms']:.0f} ms  max {h['apply_lag_max_ms']:.0f} ms  ({h['effects']} effects; "
              f"settlement row updated ~{h['settlement_applies']} times; backlog {h['backlog_at_end']} at the "
              f"end, applied in {_s(h['backlog_drained_s'])})")


def _print_ratios(results: dict, hybrid: str = "hybrid", sync: str = "sync") -> None:
    """Throughput: the median of each round's hybrid/sync (windows of one round); latency and CPU from the medians.
    `hybrid`, `sync`: the modes compared (a variant's ratios go under ratios_<hybrid>_<sync>)."""
    h, s = results[hybrid], results[sync]
    per_round = [hw["per_s"] / sw["per_s"] for hw, sw in zip(h["windows"], s["windows"])]
    r = results["ratios" if (hybrid, sync) == ("hybrid", "sync") else f"ratios_{hybrid}_{sync}"] = {
        "throughput_hybrid_over_sync": statistics.median(per_round), "throughput_per_round": per_round,
        "p50_sync_over_hybrid": s["p50_ms"] / h["p50_ms"], "p99_sync_over_hybrid": s["p99_ms"] / h["p99_ms"],
        "cpu_per_posting_sync_over_hybrid": sum(s["cpu_ms_per_posting"].values())
        / sum(h["cpu_ms_per_posting"].values())}
    print(f"# ratios (same run, adjacent windows): {hybrid}/{sync} throughput {r['throughput_hybrid_over_sync']:.2f}x "
          f"(rounds: {', '.join(f'{x:.2f}' for x in per_round)}), p50 latency sync/hybrid "
          f"{r['p50_sync_over_hybrid']:.2f}x, p99 {r['p99_sync_over_hybrid']:.2f}x, CPU per posting sync/hybrid "
          f"{r['cpu_per_posting_sync_over_hybrid']:.2f}x; invariants: "
          f"{'hold' if not results['violations'] else results['violations']}")


def _print_group_commit(results: dict, mode: str) -> None:
    """A mode with group commit over the same without: throughput (the median of each round's adjacent windows) and
    CPU per posting of each component (medians)."""
    g, n = results[mode], results[f"{mode}_nogroup"]
    per_round = [gw["per_s"] / nw["per_s"] for gw, nw in zip(g["windows"], n["windows"])]
    results[f"group_commit_{mode}"] = {"throughput_grouped_over_ungrouped": statistics.median(per_round),
                                       "throughput_per_round": per_round}
    cpu = "  ".join(f"{k} {n['cpu_ms_per_posting'][k]:.2f}->{g['cpu_ms_per_posting'][k]:.2f}"
                    for k in g["cpu_ms_per_posting"])
    print(f"# group commit (same run, adjacent windows): {mode} tx/s grouped/ungrouped "
          f"{statistics.median(per_round):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in per_round)}); CPU ms/posting "
          f"ungrouped->grouped: {cpu} (total {sum(n['cpu_ms_per_posting'].values()):.2f}->"
          f"{sum(g['cpu_ms_per_posting'].values()):.2f})")


async def run(duration_s: float = 10.0, concurrency: int = CONNECTIONS, cards: int = 1000, warmup_s: float = 1.0,
              send_buffer_ms: int = SEND_BUFFER_MS, batch_wait_ms: int = BATCH_WAIT_MS,
              receive_every_ms: int = RECEIVE_EVERY_MS, modes: tuple[str, ...] = MODES, rounds: int = ROUNDS,
              locked: float | None = None, wal_tables: bool = False, steady_wal: bool = False, **_ignored) -> dict:
    """Both modes' stacks up at once, their windows alternating (ABBA: a neighbour's load on shared cores hits
    both alike); medians per mode, the ratio of each round's adjacent windows, then the database tier."""
    workdir = Path(tempfile.mkdtemp(prefix="ledger-hot-"))
    # A PostgreSQL per mode: one mode's autovacuum and checkpoints are not counted in the other's windows.
    pgs: dict[str, EmbeddedPostgres] = {}
    for mode in modes:
        steady = steady_wal or mode.endswith("_steadywal")
        pgs[mode] = EmbeddedPostgres(workdir / f"pg-{mode}", settings=STEADY_WAL_SETTINGS if steady else None
                                     ).start()  # fsync on: commits cost what they cost
        if steady:
            print(f"{mode}: {await recycle_wal(pgs[mode])} WAL segments to reuse", flush=True)
    valkey = EmbeddedValkey(workdir / "valkey").start()
    sqs = EmbeddedSQS().start()
    results: dict = {"duration_s": duration_s, "concurrency": concurrency, "cards": cards, "rounds": rounds,
                     "steady_wal": steady_wal,
                     "send_buffer_ms": send_buffer_ms, "batch_wait_ms": batch_wait_ms,
                     "receive_every_ms": receive_every_ms}
    stacks: dict[str, ModeStack] = {}
    conns: dict[str, asyncpg.Connection] = {}
    try:
        try:
            await _windows(results, stacks, conns, pgs, valkey, sqs, workdir, modes=modes, cards=cards,
                           duration_s=duration_s, warmup_s=warmup_s, concurrency=concurrency, rounds=rounds,
                           locked=locked, send_buffer_ms=send_buffer_ms, batch_wait_ms=batch_wait_ms,
                           receive_every_ms=receive_every_ms, wal_tables=wal_tables)
        finally:
            for conn in conns.values():
                await conn.close()
            for m in stacks.values():
                m.stop()
        for mode in MODES:
            if {mode, f"{mode}_nogroup"} <= set(modes):
                _print_group_commit(results, mode)
        if "sync" in modes and "hybrid_nogroup" in modes:
            _print_ratios(results, "hybrid_nogroup")
        if "hybrid" in modes and "sync_nogroup" in modes:
            _print_ratios(results, "hybrid", "sync_nogroup")
        if set(MODES) <= set(modes):
            _print_ratios(results)
            ledger_ids = {mode: m.ledger_id for mode, m in stacks.items()}
            db = results["database_tier"] = await database_tier(pgs, ledger_ids, cards, duration_s, concurrency,
                                                                 workdir)
            print(f"database tier (pgbench ledger_post, {concurrency} clients): sync {db['sync']['per_s']:.0f} "
                  f"tx/s, hybrid {db['hybrid']['per_s']:.0f} tx/s (queue drained "
                  f"{db['hybrid']['backlog_drained_s']:.1f}s after) -> hybrid/sync {db['ratio']:.2f}x; invariants: "
                  f"{'hold' if not (db['sync']['violations'] or db['hybrid']['violations']) else 'VIOLATED'}")
    finally:
        sqs.stop()
        valkey.stop()
        for pg in pgs.values():
            pg.stop()
        remove_tree(workdir)
    return results


def _fmt(row: dict) -> str:
    line = (f"{row['per_s']:8.0f} tx/s  p50 {row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:6.1f} ms  "
            f"statuses {row['statuses']}")
    if "cpu_ms_per_posting" in row:
        parts = "  ".join(f"{k} {v:.2f}" for k, v in row["cpu_ms_per_posting"].items())
        line += f"\n        CPU ms/posting: {parts}  (total {sum(row['cpu_ms_per_posting'].values()):.2f}; " \
                f"{row['cpu_cores']:.2f} cores busy); SQS calls/posting {row['sqs_calls_per_posting']:.3f}"
    if row.get("postgresql_ms_per_posting"):
        line += "\n        PostgreSQL CPU ms/posting by whom it served: " + "  ".join(
            f"{k} {v:.2f}" for k, v in sorted(row["postgresql_ms_per_posting"].items()))
    if "wal_per_posting" in row:
        wal = row["wal_per_posting"]
        line += (f"\n        WAL/posting: {wal['wal_bytes']:,.0f} B in {wal['wal_records']:.1f} records, "
                 f"{wal['wal_fpi']:.2f} full-page images; {row['wal_segments_created']:.0f} new WAL segments")
    if row.get("wal_bytes_per_posting_by_table"):
        top = sorted(row["wal_bytes_per_posting_by_table"].items(), key=lambda kv: -kv[1])[:WAL_TABLES_SHOWN]
        line += "\n        WAL B/posting by table: " + "  ".join(f"{k} {v:,.0f}" for k, v in top)
    return line


def _s(value: float | None) -> str:
    return "NOT within %ds" % DRAIN_WAIT_S_MAX if value is None else f"{value:.1f}s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of one measured window")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="windows per mode (alternating; medians)")
    parser.add_argument("--concurrency", type=int, default=CONNECTIONS, help="client connections")
    parser.add_argument("--cards", type=int, default=1000, help="card accounts")
    parser.add_argument("--send-buffer-ms", type=int, default=SEND_BUFFER_MS, help="the cell's nudge buffer")
    parser.add_argument("--batch-wait-ms", type=int, default=BATCH_WAIT_MS, help="the worker's batch window")
    parser.add_argument("--receive-every-ms", type=int, default=RECEIVE_EVERY_MS,
                        help="the worker's receive interval under load")
    parser.add_argument("--modes", default=",".join(MODES), help="sync,hybrid (both: the ratios, the database tier); "
                        "hybrid,hybrid_nogroup: group commit on and off")
    parser.add_argument("--locked", action="store_true", help="card authorizations: each card's debit under a "
                        "balance lock (applied in its posting; in hybrid mode the settlement's credit stays async)")
    parser.add_argument("--declines", type=float, default=0.0, help="with --locked: the fraction declined (422)")
    parser.add_argument("--wal-tables", action="store_true", help="each window's WAL bytes per posting by table "
                        "(read back with pg_walinspect after the window)")
    parser.add_argument("--steady-wal", action="store_true", help="every server with WAL segments to reuse, as one "
                        "in service (a fresh one zero-fills a new segment for each 16 MB written)")
    args = parser.parse_args()
    httpload.run(run(duration_s=args.duration, concurrency=args.concurrency, cards=args.cards,
                     send_buffer_ms=args.send_buffer_ms, batch_wait_ms=args.batch_wait_ms,
                     receive_every_ms=args.receive_every_ms, modes=tuple(args.modes.split(",")), rounds=args.rounds,
                     locked=args.declines if args.locked else None, wal_tables=args.wal_tables,
                     steady_wal=args.steady_wal),
                 loop_factory=None)


if __name__ == "__main__":
    main()
