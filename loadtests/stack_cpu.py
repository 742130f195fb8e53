"""Whole-stack CPU per request under Modern Treasury's mix, by component, on `make run`'s own topology.

Starts `python -m control_plane.run` on free ports and a temporary data directory (router, two cells with their
workers and beat, PostgreSQL, Valkey, the SQS endpoint), makes books for its demo tenant (one hot omnibus
account, many investors) and sends, through the router, 1 write (investor against the omnibus, no balance
lock: async) to 3 balance reads (`GET /api/ledger_accounts/{id}`), closed loop. Over each measured window it
takes the CPU time of every process of the stack from /proc (loadtests.monitor.Stack) and divides it by the
requests served; prints it per component, the SQS calls per posting (ledger_sqs_calls_total) and the apply
lag (the workers' histogram). CPU per request is the robust figure on shared cores; requests/s is not.

    python -m loadtests.stack_cpu --duration 10 --concurrency 64 --rounds 3 [--against ../an-earlier-worktree]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from control_plane.devstack import remove_tree
from loadtests import httpload
from loadtests.httpload import run_load
from loadtests.monitor import Stack, lag_quantile, scrape

ROOT = Path(__file__).resolve().parents[1]
INVESTORS = 1000
RATE_LIMIT_PER_S = 1_000_000  # the benchmark measures the stack, not the router's rate limiter
WARMUP_S = 3.0
SQS_CALLS_METRIC = "ledger_sqs_calls_total"
WRITE_SHARE = 0.25  # every connection sends 1 write to 3 reads, at random


def _rig():
    sys.path.insert(0, str(ROOT / "tests"))  # the make-run rig the platform tests start the stack with
    import make_run_rig

    return make_run_rig


@contextlib.contextmanager
def checkout_stacks(roots: dict[str, Path], prefix: str, start):
    """A `make run` stack of each checkout ({name: root}), started by `start(rig, root, workdir)`: on the way out
    every stack stopped, PYTHONPATH and the rig's ROOT put back, the work directory removed."""
    rig = _rig()
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    path_before = os.environ.get("PYTHONPATH")
    stacks: dict = {}
    try:
        for name, root in roots.items():
            stacks[name] = start(rig, root, workdir / name)
        yield stacks
    finally:
        for s in stacks.values():
            s.stop()
        if path_before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = path_before
        rig.ROOT = ROOT
        remove_tree(workdir)


def make_books(base_url: str, auth: tuple[str, str]) -> tuple[str, str, list[str]]:
    with httpx.Client(base_url=base_url, auth=auth, timeout=30) as http:
        def post(path: str, body: dict) -> dict:
            r = http.post(path, json=body)
            r.raise_for_status()
            return r.json()

        ledger = post("/api/ledgers", {"name": "stack-cpu"})["id"]

        def account(name: str, normal_balance: str) -> str:
            return post("/api/ledger_accounts", {"name": name, "ledger_id": ledger, "normal_balance": normal_balance,
                                                 "currency": "USD"})["id"]

        omnibus = account("omnibus", "debit")
        return ledger, omnibus, [account(f"investor {i}", "credit") for i in range(INVESTORS)]


def mix_requests(ledger: str, omnibus: str, investors: list[str]) -> dict:
    """One request kind, "mix": a write with probability WRITE_SHARE, else a read, counted under its own name."""
    def write():
        body = json.dumps({"ledger_id": ledger, "status": "posted", "ledger_entries": [
            {"ledger_account_id": omnibus, "direction": "debit", "amount": (amount := random.randint(1, 100_000))},
            {"ledger_account_id": random.choice(investors), "direction": "credit", "amount": amount}]}).encode()
        return "POST", "/api/ledger_transactions", body, f"Idempotency-Key: {uuid.uuid4().hex}\r\n", "write"

    def read():
        return "GET", f"/api/ledger_accounts/{random.choice(investors)}", b"", "", "read"

    return {"mix": lambda: write() if random.random() < WRITE_SHARE else read()}


def cpu_by_component(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per component between two snapshots; a process born in between counts whole."""
    out: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        spent = seconds - before[pid][1] if pid in before else seconds
        out[name] = out.get(name, 0.0) + max(spent, 0.0)
    return out


def served(summary: dict) -> int:
    """Requests answered with a 2xx: what the CPU is divided by (others are printed as statuses)."""
    return sum(n for status, n in summary["statuses"].items() if 200 <= status < 300)


def metric_sum(samples: list[dict[str, float]], prefix: str) -> float:
    return sum(v for m in samples for k, v in m.items() if k.startswith(prefix))


def merged(samples: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in samples:
        for k, v in m.items():
            out[k] = out.get(k, 0.0) + v
    return out


async def window(stack: Stack, urls: list[str], port: int, auth, duration_s: float, concurrency: int,
                 make: dict) -> dict:
    """One measured window: requests, CPU per request by component, SQS calls per posting, apply lag."""
    metrics_before = [scrape(u) for u in urls]
    cpu_before = stack.cpu_seconds()
    started, generator_before = time.monotonic(), time.process_time()
    stats = await run_load("127.0.0.1", port, auth, duration_s=duration_s, workers=[("mix", concurrency)],
                           make_request=make)
    elapsed, generator_s = time.monotonic() - started, time.process_time() - generator_before
    cpu = cpu_by_component(cpu_before, stack.cpu_seconds())
    metrics_after = [scrape(u) for u in urls]
    w, r = stats["write"].summary(elapsed), stats["read"].summary(elapsed)
    requests = served(w) + served(r)
    sqs_calls = metric_sum(metrics_after, SQS_CALLS_METRIC) - metric_sum(metrics_before, SQS_CALLS_METRIC)
    lag_before, lag_after = merged(metrics_before), merged(metrics_after)
    by_operation = {k[len(SQS_CALLS_METRIC) + 12:-2]: round((v - lag_before.get(k, 0.0)) / max(1, served(w)), 3)
                    for k, v in sorted(lag_after.items()) if k.startswith(SQS_CALLS_METRIC + '{operation="')}
    return {
        "writes": w, "reads": r, "requests": requests, "seconds": elapsed,
        "cpu_ms_per_request": {k: v * 1000 / max(1, requests) for k, v in sorted(cpu.items())},
        "stack_cpu_ms_per_request": sum(cpu.values()) * 1000 / max(1, requests),
        "cores_busy": sum(cpu.values()) / elapsed,
        "load_generator_ms_per_request": generator_s * 1000 / max(1, requests),  # not part of the stack
        "sqs_calls_per_posting": sqs_calls / max(1, served(w)),
        "sqs_calls_per_posting_by_operation": by_operation,
        "apply_lag_p90_s": lag_quantile(lag_before, lag_after, 0.9),
    }


def _print(label: str, row: dict) -> None:
    w, r = row["writes"], row["reads"]
    parts = "  ".join(f"{k} {v:.3f}" for k, v in row["cpu_ms_per_request"].items())
    print(f"{label}: {w['per_s']:.0f} writes/s (p90 {w['p90_ms']:.1f} ms) + {r['per_s']:.0f} reads/s "
          f"(p90 {r['p90_ms']:.1f} ms), statuses {w['statuses']} {r['statuses']}; stack CPU "
          f"{row['stack_cpu_ms_per_request']:.3f} ms/request ({row['cores_busy']:.2f} cores): {parts}; "
          f"SQS calls/posting {row['sqs_calls_per_posting']:.3f} {row['sqs_calls_per_posting_by_operation']}; "
          f"apply lag p90 <= {row['apply_lag_p90_s']} s; load generator (not counted) "
          f"{row['load_generator_ms_per_request']:.3f} ms/request", flush=True)


def summarize(rows: list[dict]) -> dict:
    components = sorted({k for row in rows for k in row["cpu_ms_per_request"]})
    return {
        "rounds": rows,
        "median_cpu_ms_per_request": {k: statistics.median(row["cpu_ms_per_request"].get(k, 0.0) for row in rows)
                                      for k in components},
        "median_stack_cpu_ms_per_request": statistics.median(r["stack_cpu_ms_per_request"] for r in rows),
        "median_writes_per_s": statistics.median(r["writes"]["per_s"] for r in rows),
        "median_reads_per_s": statistics.median(r["reads"]["per_s"] for r in rows),
        "median_write_p90_ms": statistics.median(r["writes"]["p90_ms"] for r in rows),
        "median_read_p90_ms": statistics.median(r["reads"]["p90_ms"] for r in rows),
        "median_sqs_calls_per_posting": statistics.median(r["sqs_calls_per_posting"] for r in rows),
    }


def _print_summary(name: str, summary: dict) -> None:
    median = summary["median_cpu_ms_per_request"]
    print(f"{name}: median CPU ms/request by component: " + ", ".join(f"{k} {v:.3f}" for k, v in median.items()))
    print(f"{name}: median stack CPU {summary['median_stack_cpu_ms_per_request']:.3f} ms/request; "
          f"{summary['median_writes_per_s']:.0f} writes/s + {summary['median_reads_per_s']:.0f} reads/s; "
          f"p90 write {summary['median_write_p90_ms']:.1f} ms, read {summary['median_read_p90_ms']:.1f} ms; "
          f"SQS calls/posting {summary['median_sqs_calls_per_posting']:.3f}", flush=True)


class MixedStack:
    """One `make run` stack of a checkout (its code in every process), its books and its processes."""

    def __init__(self, rig, root: Path, workdir: Path) -> None:
        self.rig, self.root = rig, root
        self._use()
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc = rig.start_stack(workdir)  # blocking on purpose: a cancellation cannot orphan a half-started one

    def _use(self) -> None:
        # The code under test is the checkout's, in every process (a worker runs in its own directory), and the
        # rig starts `python -m control_plane.run` (and ledgerctl) in its ROOT.
        os.environ["PYTHONPATH"] = str(self.root)
        self.rig.ROOT = self.root

    def prepare(self) -> None:
        self._use()
        dev = self.proc.dev
        self.auth = (dev["tenant_id"], dev["api_key"])
        limited = self.proc.ledgerctl("tenants", "rate-limit", dev["tenant_id"], "--per-s", str(RATE_LIMIT_PER_S))
        if limited.returncode:
            raise RuntimeError(f"ledgerctl tenants rate-limit: {limited.stderr}")
        self.make = mix_requests(*make_books(dev["base_url"], self.auth))
        self.stack = Stack(dev["base_url"], dev["control_plane_database_url"])
        self.urls = self.stack.metrics_urls()

    async def window(self, duration_s: float, concurrency: int) -> dict:
        return await window(self.stack, self.urls, self.stack.port, self.auth, duration_s, concurrency, self.make)

    def stop(self) -> None:
        self.rig.stop_stack(self.proc)


async def alternating_windows(stacks: dict[str, MixedStack], duration_s: float, concurrency: int, rounds: int,
                              window, on_row) -> dict[str, list[dict]]:
    """Each stack prepared and warmed up, then `rounds` windows per stack, their order alternating (ABBA) so that a
    neighbour's load on the shared cores hits both alike: `window(stack)` measures one, `on_row(label, row)` shows it."""
    for s in stacks.values():
        await asyncio.to_thread(s.prepare)
    for s in stacks.values():
        await run_load("127.0.0.1", s.stack.port, s.auth, duration_s=WARMUP_S, workers=[("mix", concurrency)],
                       make_request=s.make)
    rows: dict[str, list[dict]] = {name: [] for name in stacks}
    for i in range(1, rounds + 1):
        for name in (list(stacks) if i % 2 else list(reversed(stacks))):
            rows[name].append(await window(stacks[name]))
            on_row(f"{name} round {i}", rows[name][-1])
    return rows


async def run(duration_s: float = 10.0, concurrency: int = 64, rounds: int = 3, against: str | None = None) -> dict:
    """With `against` (another checkout, e.g. a git worktree of an earlier commit), both stacks run at once and
    their windows alternate (ABBA), so that a neighbour's load on the shared cores hits both alike."""
    roots = {"this": ROOT, **({"against": Path(against).resolve()} if against else {})}
    with checkout_stacks(roots, "ledger-stack-cpu-", MixedStack) as stacks:
        print(f"# whole-stack CPU per request: make run topology, {concurrency} connections (1 write : 3 reads), "
              f"{rounds} windows of {duration_s:.0f}s per stack; " + ", ".join(f"{n} = {r}" for n, r in roots.items()))
        rows = await alternating_windows(stacks, duration_s, concurrency, rounds,
                                         lambda stack: stack.window(duration_s, concurrency), _print)
        summaries = {name: summarize(r) for name, r in rows.items()}
        for name, summary in summaries.items():
            _print_summary(name, summary)
        if against:
            this, other = summaries["this"], summaries["against"]
            print(f"# this / against: stack CPU per request "
                  f"{this['median_stack_cpu_ms_per_request'] / other['median_stack_cpu_ms_per_request']:.2f}, SQS "
                  f"calls per posting {this['median_sqs_calls_per_posting'] / max(1e-9, other['median_sqs_calls_per_posting']):.2f}")
            return summaries
        return summaries["this"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured window")
    parser.add_argument("--concurrency", type=int, default=64, help="keep-alive connections")
    parser.add_argument("--rounds", type=int, default=3, help="measured windows per stack (medians are printed)")
    parser.add_argument("--against", help="another checkout (e.g. a git worktree of an earlier commit) run beside "
                                          "this one, windows alternating: the before/after in one run")
    args = parser.parse_args()
    httpload.run(run(args.duration, args.concurrency, args.rounds, args.against))


if __name__ == "__main__":
    main()
