"""`make bench` moves: a tenant with a large history moved between two cells while it keeps writing.

One embedded PostgreSQL holds the control plane and two cells' databases; the cells (`python -m cell`) and a
router (`python -m router`, route changes on Valkey) run as processes, as in production. Each run builds a
fresh tenant of MOVE_BENCH_ENTRIES entries (default 1,000,000) straight into the source cell (the rows
written in bulk, then folded by the cell's own `ledger_apply`, so the cell's invariants hold), starts writers
posting to it through the router at a steady rate (each with an Idempotency-Key, retried on 503/421), runs
`ledgerctl tenants move` as its own process, and checks that every acknowledged posting is on the target
exactly once. The history has what a tenant's postings leave besides entries too: one event (positioned), one
idempotency key (answered), one audit link (sealed) and one webhook delivery (delivered) per transaction, and
bulk requests with a result per transaction. Each run moves a tenant of a tenth of the entries, then one of all
of them: the freeze must not grow with the history. Printed per run and as medians per size: the freeze window
(source frozen to target accepting writes) and the steps inside it, total move time, copy rows/s, and the largest
gap between two acknowledged writes the clients saw.

    python -m loadtests.bench --only moves            (MOVE_BENCH_ENTRIES, MOVE_BENCH_RUNS, MOVE_BENCH_RATE)
    python -m loadtests.bench_moves --entries 100000 --runs 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from cell.store import audit
from control_plane import catalog, operations
from control_plane.devstack import EmbeddedPostgres, EmbeddedValkey, free_port, remove_tree
from control_plane.settings import ControlPlaneSettings
from loadtests import httpload
from loadtests.bench import seed_ledger
from loadtests.router_overhead import _spawn, _stop, _wait_ready

ACCOUNTS = 20
# The tables the history fills besides entries (_other_history), reported per run.
HISTORY_TABLES = ("events", "idempotency_keys", "audit_links", "webhook_deliveries", "bulk_results")
# The steps inside the write freeze, in order (control_plane/moves.py).
FROZEN_STEPS = ("freeze", "final_catch_up", "verify", "flip", "source_moved_out", "unfreeze")


async def build_history(url: str, tenant: str, ledger_id: str, accounts: list[str], transactions: int,
                        chunk: int = 100_000, days: int = 30) -> None:
    """`transactions` posted two-entry transfers (2 entries each) between the accounts, spread over `days` days of
    effective time, each with its first version (hash-chained as ledger_post writes it) and its entries' effects,
    written in bulk and folded into the caches by `ledger_apply` (running balances, effective-time buckets)."""
    conn = await asyncpg.connect(url)
    try:
        account_ids = [uuid.UUID(a) for a in accounts]
        for start in range(0, transactions, chunk):
            n = min(chunk, transactions - start)
            async with conn.transaction():
                await conn.execute("""
                    CREATE TEMP TABLE g ON COMMIT DROP AS
                    SELECT i, gen_random_uuid() AS txn, gen_random_uuid() AS e1, gen_random_uuid() AS e2,
                           ($3::uuid[])[1 + i % cardinality($3::uuid[])] AS debit,
                           ($3::uuid[])[1 + (i + 1 + (i / cardinality($3::uuid[])) % (cardinality($3::uuid[]) - 1))
                                          % cardinality($3::uuid[])] AS credit,
                           (1 + i % 997)::bigint AS amount,
                           date_trunc('second', now()) - make_interval(days => (i % $4)::int, secs => (i % 86400)::int) AS eff
                    FROM generate_series($1::bigint, $1::bigint + $2 - 1) i""", start, n, account_ids, days)
                await conn.execute("""
                    INSERT INTO ledger_transactions (id, tenant_id, ledger_id, description, status, effective_at,
                                                     posted_at, created_at, updated_at)
                    SELECT txn, $1, $2, 'history ' || i, 'posted', eff, now(), now(), now() FROM g ORDER BY i""",
                                   tenant, uuid.UUID(ledger_id))
                await conn.execute("""
                    WITH s AS (
                        SELECT txn, jsonb_build_object(
                            'id', txn, 'ledger_id', $2::uuid, 'description', 'history ' || i, 'status', 'posted',
                            'effective_at', to_char(eff AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                            'external_id', NULL, 'metadata', '{}'::jsonb, 'reverses_ledger_transaction_id', NULL,
                            'ledger_entries', jsonb_build_array(
                                jsonb_build_array(e1, debit, 'debit', amount),
                                jsonb_build_array(e2, credit, 'credit', amount)),
                            'ledgerable_type', NULL, 'ledgerable_id', NULL) AS snapshot, i
                        FROM g)
                    INSERT INTO ledger_transaction_versions (transaction_id, version, tenant_id, snapshot, prev_hash,
                                                             hash, created_at)
                    SELECT txn, 1, $1, snapshot, NULL, ledger_version_hash(NULL, snapshot), now() FROM s ORDER BY i""",
                                   tenant, uuid.UUID(ledger_id))
                await conn.execute("""
                    INSERT INTO ledger_entries (id, tenant_id, transaction_id, ledger_account_id, direction, amount,
                                                effective_at, created_at)
                    SELECT e.id, $1, g.txn, e.account, e.direction, g.amount, g.eff, now()
                    FROM g CROSS JOIN LATERAL (VALUES (g.e1, g.debit, 'debit', 1), (g.e2, g.credit, 'credit', 2))
                         AS e(id, account, direction, n)
                    ORDER BY g.i, e.n""", tenant)
                # The entries' effects queued, as an async posting queues them; ledger_apply folds them below.
                await conn.execute("""
                    INSERT INTO balance_effects (tenant_id, account_id, entry_id, kind, d_pending_debits,
                                                 d_pending_credits, d_posted_debits, d_posted_credits, effective_at)
                    SELECT $1, f.account_id, f.entry_id, f.kind, f.d_pending_debits, f.d_pending_credits,
                           f.d_posted_debits, f.d_posted_credits, f.effective_at
                    FROM g CROSS JOIN LATERAL ledger_effects_of(ARRAY[g.e1, g.e2], ARRAY[g.debit, g.credit],
                                                                ARRAY['debit', 'credit'], ARRAY[g.amount, g.amount],
                                                                'entry', true, ARRAY[g.eff, g.eff]) f
                    ORDER BY g.i""", tenant)
                await conn.execute("SELECT ledger_apply($1::uuid[], $2)", sorted(account_ids), tenant)
                await _other_history(conn, tenant)
        async with conn.transaction():  # every version linked, as the workers' sealer keeps it
            await audit.seal_tenant(conn, tenant)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def _other_history(conn: asyncpg.Connection, tenant: str, bulk_size: int = 100) -> None:
    """What the postings of temp table g leave besides entries: each its event (positioned after the tenant's last),
    its Idempotency-Key (answered), its delivery to the tenant's webhook endpoint (delivered); and bulk requests
    (completed) of `bulk_size` results, one per posting."""
    await conn.execute("""
        INSERT INTO events (id, tenant_id, position, resource, event_name, entity_id, data)
        SELECT gen_random_uuid(), $1, coalesce((SELECT max(position) FROM events WHERE tenant_id = $1
                                                AND position IS NOT NULL), 0) + row_number() OVER (ORDER BY i),
               'ledger_transaction', 'ledger_transaction.created', txn, jsonb_build_object('id', txn, 'amount', amount)
        FROM g ORDER BY i""", tenant)
    await conn.execute("""
        INSERT INTO idempotency_keys (tenant_id, key, request_hash, resource_type, resource_id, status_code, response)
        SELECT $1, 'history-' || txn, sha256(txn::text::bytea), 'ledger_transaction', txn, 201,
               convert_to(jsonb_build_object('id', txn)::text, 'UTF8')
        FROM g ORDER BY i""", tenant)
    endpoint = await conn.fetchval("SELECT id FROM webhook_endpoints WHERE tenant_id = $1", tenant)
    await conn.execute("""
        INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event_position, entity_id, event_name,
                                        status, attempts, give_up_at, last_attempt_at, last_status_code)
        SELECT gen_random_uuid(), $1, $2, e.id, e.position, e.entity_id, e.event_name, 'succeeded', 1, now(), now(), 200
        FROM events e JOIN g ON g.txn = e.entity_id WHERE e.tenant_id = $1 ORDER BY e.position""", tenant, endpoint)
    await conn.execute("UPDATE webhook_endpoints SET after_position = (SELECT max(position) FROM events "
                       "WHERE tenant_id = $1) WHERE id = $2", tenant, endpoint)
    await conn.execute("CREATE TEMP TABLE bg ON COMMIT DROP AS SELECT grp, gen_random_uuid() AS id, count(*) AS n "
                       "FROM (SELECT i / $1 AS grp FROM g) x GROUP BY grp", bulk_size)
    await conn.execute("""
        INSERT INTO bulk_requests (id, tenant_id, action_type, resource_type, status, resources, total_resource_count,
                                   success_result_count)
        SELECT id, $1, 'create', 'ledger_transaction', 'completed', '[]', n, n FROM bg ORDER BY grp""", tenant)
    await conn.execute("""
        INSERT INTO bulk_results (id, tenant_id, request_id, resource_index, entity_type, entity_id, entity, status)
        SELECT gen_random_uuid(), $1, bg.id, (g.i % $2)::int, 'ledger_transaction', g.txn,
               jsonb_build_object('id', g.txn), 'successful'
        FROM g JOIN bg ON bg.grp = g.i / $2 ORDER BY g.i""", tenant, bulk_size)


async def _sealer(url: str, interval_s: float = 1.0) -> None:
    """The source cell's audit sealer, as its workers run it (every second): the freeze links only the tail."""
    conn = await asyncpg.connect(url)
    try:
        while True:
            await audit.seal_until_caught_up(conn)
            await asyncio.sleep(interval_s)
    finally:
        await conn.close()


async def create_books(cp: asyncpg.Connection, settings: ControlPlaneSettings, cell: str, cell_db_url: str,
                       tenant: str) -> tuple[str, str, list[str]]:
    """A tenant on `cell` with a key, a ledger and ACCOUNTS accounts (half debit-normal): (secret, ledger, accounts)."""
    await operations.create_tenant(cp, settings, tenant, "move bench", cell)
    await operations.set_rate_limit(cp, settings, tenant, 1_000_000, 1_000_000)
    _, secret = await operations.create_key(cp, settings, tenant)
    accounts = [uuid.uuid4() for _ in range(ACCOUNTS)]
    conn = await asyncpg.connect(cell_db_url)
    try:
        async with conn.transaction():
            ledger = await seed_ledger(conn, tenant, "bench", [(a, f"acct {i}", "debit" if i % 2 else "credit")
                                                               for i, a in enumerate(accounts)])
            await conn.execute("INSERT INTO webhook_endpoints (id, tenant_id, url, key, active) "
                               "VALUES ($1, $2, 'http://127.0.0.1:9/hook', 'k', false)", uuid.uuid4(), tenant)
    finally:
        await conn.close()
    return secret, str(ledger), [str(a) for a in accounts]


class Writers:
    """`count` clients posting transfers through the router at `rate` postings/s in all, each with
    an Idempotency-Key retried until answered 201 (503, 421, timeouts: same key). Records every acknowledgement."""

    def __init__(self, url: str, auth: tuple[str, str], ledger: str, accounts: list[str], count: int,
                 rate: float) -> None:
        self.url, self.auth, self.ledger, self.accounts = url, auth, ledger, accounts
        self.count, self.interval = count, count / rate
        self.acked: dict[str, str] = {}
        self.ack_times: list[float] = []
        self.retries: dict[int, int] = {}
        self.stopping = False

    async def start(self) -> None:
        self.tasks = [asyncio.create_task(self._run(w)) for w in range(self.count)]

    async def stop(self) -> None:
        self.stopping = True
        await asyncio.gather(*self.tasks)

    async def _run(self, w: int) -> None:
        async with httpx.AsyncClient(base_url=self.url, auth=self.auth, timeout=10) as http:
            n = 0
            next_at = time.monotonic()
            while not self.stopping:
                n += 1
                key = f"bench-{w}-{n}"
                debit, credit = self.accounts[n % len(self.accounts)], self.accounts[(n + 1 + w) % len(self.accounts)]
                if debit == credit:
                    credit = self.accounts[(n + 2) % len(self.accounts)]
                body = {"ledger_id": self.ledger, "status": "posted", "ledger_entries": [
                    {"ledger_account_id": debit, "direction": "debit", "amount": 1 + n % 50},
                    {"ledger_account_id": credit, "direction": "credit", "amount": 1 + n % 50}]}
                while True:
                    try:
                        r = await http.post("/api/ledger_transactions", json=body, headers={"Idempotency-Key": key})
                        status = r.status_code
                    except httpx.TransportError:
                        status = 0
                    if status == 201:
                        self.acked[key] = r.json()["id"]
                        self.ack_times.append(time.monotonic())
                        break
                    if status not in (0, 409, 421, 502, 503, 504):
                        raise RuntimeError(f"posting {key}: {status} {r.text[:300]}")
                    self.retries[status] = self.retries.get(status, 0) + 1
                    await asyncio.sleep(0.01)
                next_at += self.interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def largest_gap_s(self, start: float, end: float) -> float:
        times = sorted(t for t in self.ack_times if start <= t <= end)
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


async def move_once(stack: dict, run: int, entries: int, writers: int, rate: float, warm_s: float) -> dict:
    """Build a tenant of `entries` entries on cell A, move it to cell B while it writes; the move's report and
    what the clients saw."""
    tenant = f"move-bench-{run}-{uuid.uuid4().hex[:6]}"
    cp = await catalog.connect(stack["cp_url"])
    try:
        secret, ledger, accounts = await create_books(cp, stack["settings"], "bench-a", stack["cells"]["bench-a"],
                                                      tenant)
    finally:
        await cp.close()
    started = time.monotonic()
    await build_history(stack["cells"]["bench-a"], tenant, ledger, accounts, entries // 2)
    built_s = time.monotonic() - started
    clients = Writers(stack["router"], (tenant, secret), ledger, accounts, writers, rate)
    await clients.start()
    sealer = asyncio.create_task(_sealer(stack["cells"]["bench-a"]))
    try:
        await asyncio.sleep(warm_s)
        move_started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "control_plane.cli", "--format", "json", "tenants", "move", tenant, "--to",
            "bench-b", "--yes", env={**os.environ, **stack["env"]}, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        move_ended = time.monotonic()
        if proc.returncode != 0:
            raise RuntimeError(f"the move failed ({proc.returncode}): {err.decode()[-3000:]}")
        await asyncio.sleep(warm_s)
    finally:
        await clients.stop()
        sealer.cancel()
        await asyncio.gather(sealer, return_exceptions=True)
    result = json.loads(out)
    # Every acknowledged posting is on the target, exactly once.
    conn = await asyncpg.connect(stack["cells"]["bench-b"])
    try:
        found = await conn.fetchval("SELECT count(*) FROM ledger_transactions WHERE id = ANY($1::uuid[])",
                                    [uuid.UUID(i) for i in clients.acked.values()])
    finally:
        await conn.close()
    if found != len(clients.acked):
        raise RuntimeError(f"{len(clients.acked)} postings acknowledged, {found} on the target")
    steps = {s["step"]: s["ms"] for s in result["steps"]}
    copied = sum(result["rows_copied"].values())
    rows = result["verification"]["rows"]
    return {"entries": rows["ledger_entries"], "history": {t: rows[t] for t in HISTORY_TABLES},
            "build_s": round(built_s, 1),
            "move_s": round(move_ended - move_started, 1), "freeze_ms": result["freeze_ms"],
            "copy_rows_per_s": round(copied / max(0.001, (steps["copy"] + steps["catch_up"]) / 1000)),
            "rows_copied": copied, "steps_ms": steps, "acked": len(clients.acked), "retries": clients.retries,
            "largest_gap_ms": round(clients.largest_gap_s(move_started, move_ended + warm_s) * 1000),
            "verification": {k: result["verification"][k] for k in ("ok", "accounts_checked",
                                                                     "transactions_checked")}}


def _print_run(r: dict) -> None:
    inside = ", ".join(f"{s} {r['steps_ms'].get(s)}" for s in FROZEN_STEPS)
    history = ", ".join(f"{t} {n}" for t, n in r["history"].items())
    print(f"run: {r['entries']} entries, {history} (built in {r['build_s']} s): move {r['move_s']} s, copy "
          f"{r['copy_rows_per_s']} rows/s, freeze {r['freeze_ms']} ms [{inside} ms], largest client gap "
          f"{r['largest_gap_ms']} ms, {r['acked']} postings acknowledged, retries {r['retries']}, "
          f"pre_verify {r['steps_ms'].get('pre_verify')} ms")


async def run(duration_s: float = 10.0, concurrency: int = 16, *, entries: int | None = None,
              runs: int | None = None, rate: float | None = None) -> dict:
    entries = entries or int(os.environ.get("MOVE_BENCH_ENTRIES", "1000000"))
    runs = runs or int(os.environ.get("MOVE_BENCH_RUNS", "3"))
    rate = rate or float(os.environ.get("MOVE_BENCH_RATE", "100"))
    writers = max(1, min(8, concurrency // 4))
    warm_s = min(5.0, max(1.0, duration_s / 4))
    workdir = Path(tempfile.mkdtemp(prefix="ledger-move-bench-"))
    pg = EmbeddedPostgres(workdir / "pg").start()
    valkey = EmbeddedValkey(workdir / "valkey").start()
    procs = []
    try:
        cp_url = pg.create_database("control_plane")
        settings = ControlPlaneSettings(database_url=cp_url, redis_url=valkey.url, actor="bench")
        cells = {}
        cp = await catalog.connect(cp_url)
        try:
            await catalog.migrate_catalog(cp)
            for name in ("bench-a", "bench-b"):
                db_url = pg.create_database(name.replace("-", "_"))
                port = free_port()
                log = workdir / f"{name}.log"
                proc = _spawn("cell", {"CELL_DATABASE_URL": db_url, "CELL_PORT": str(port), "CELL_NAME": name,
                                       "CELL_POSTING_MODE": "sync"}, log)
                procs.append(proc)
                _wait_ready(f"http://127.0.0.1:{port}/readyz", proc, log)
                await operations.add_cell(cp, settings, name, f"http://127.0.0.1:{port}", db_url)
                cells[name] = db_url
        finally:
            await cp.close()
        router_port = free_port()
        router = _spawn("router", {"ROUTER_PORT": str(router_port), "ROUTER_CONTROL_PLANE_DATABASE_URL": cp_url,
                                   "ROUTER_REDIS_URL": valkey.url, "ROUTER_METRICS_PORT": str(free_port())},
                        workdir / "router.log")
        procs.append(router)
        _wait_ready(f"http://127.0.0.1:{router_port}/readyz", router, workdir / "router.log")
        stack = {"cp_url": cp_url, "settings": settings, "cells": cells, "router": f"http://127.0.0.1:{router_port}",
                 "env": {"CONTROL_PLANE_DATABASE_URL": cp_url, "CONTROL_PLANE_REDIS_URL": valkey.url,
                         "CONTROL_PLANE_ACTOR": "bench"}}
        sizes = (max(2, entries // 10), entries)
        print(f"# tenant moves: {' and '.join(map(str, sizes))} entries per tenant, {runs} run(s) of each, {writers} "
              f"writers at {rate:.0f} postings/s through the router, fsync on")
        results: dict[int, list[dict]] = {size: [] for size in sizes}
        for i in range(runs):
            for size in sizes:
                results[size].append(await move_once(stack, i, size, writers, rate, warm_s))
                _print_run(results[size][-1])
        summary = {"entries": entries, "sizes": {size: _summary(rs) for size, rs in results.items()}}
        for size, m in summary["sizes"].items():
            inside = ", ".join(f"{s} {m['median_steps_ms'].get(s)}" for s in FROZEN_STEPS)
            print(f"median of {runs} at {size} entries: freeze {m['median_freeze_ms']} ms [{inside} ms], largest "
                  f"client gap {m['median_largest_gap_ms']} ms, move {m['median_move_s']} s, copy "
                  f"{m['median_copy_rows_per_s']} rows/s")
        small, large = (summary["sizes"][size]["median_freeze_ms"] for size in sizes)
        summary["freeze_ratio_10x_history"] = round(large / small, 2) if small else None
        print(f"freeze with a 10x longer history: {large} ms against {small} ms "
              f"(x{summary['freeze_ratio_10x_history']})")
        return summary
    finally:
        for proc in reversed(procs):
            _stop(proc)
        valkey.stop()
        pg.stop()
        remove_tree(workdir)


def _summary(results: list[dict]) -> dict:
    return {"runs": results, "median_freeze_ms": statistics.median(r["freeze_ms"] for r in results),
            "median_largest_gap_ms": statistics.median(r["largest_gap_ms"] for r in results),
            "median_move_s": statistics.median(r["move_s"] for r in results),
            "median_copy_rows_per_s": statistics.median(r["copy_rows_per_s"] for r in results),
            "median_steps_ms": {s: statistics.median(r["steps_ms"].get(s) or 0 for r in results)
                                for s in results[0]["steps_ms"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=None, help="entries of the larger tenant moved; the other "
                        "has a tenth (1,000,000)")
    parser.add_argument("--runs", type=int, default=None, help="moves, each of a fresh tenant (3)")
    parser.add_argument("--rate", type=float, default=None, help="postings/s the writers send in all (100)")
    parser.add_argument("--duration", type=float, default=10.0, help="writing before and after the move is a "
                        "quarter of it (1-5 s)")
    parser.add_argument("--concurrency", type=int, default=16, help="writers: a quarter of it (1-8)")
    args = parser.parse_args()
    httpload.run(run(args.duration, args.concurrency, entries=args.entries, runs=args.runs, rate=args.rate),
                 loop_factory=None)


if __name__ == "__main__":
    main()
