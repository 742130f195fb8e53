"""What the stack does during a load test, sampled beside Locust: the async queue and the apply lag from the
cells' and workers' Prometheus metrics, and the CPU time of every process of the stack, by component.

Only for a stack on this machine: the processes are found from the port the load test targets (its listener,
and, when that is `make run`'s router, the whole tree under `python -m control_plane.run` plus the daemonized
PostgreSQL); the metrics endpoints from those processes' CELL_METRICS_PORT / WORKER_METRICS_PORT, or given.
Writes monitor.csv (one row per sample) and cpu.json (CPU seconds per component over the run).
"""

from __future__ import annotations

import csv
import json
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import psutil

LAG_BUCKETS_METRIC = "ledger_apply_lag_seconds_bucket"
REFIND_S = 10.0  # a restarted process is counted from its next discovery


def _listener(port: int) -> psutil.Process | None:
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return psutil.Process(c.pid)
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        pass
    return None


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def component(cmd: str) -> str:
    for marker, name in ((" -m router", "router"), (" -m cell", "cell"), (" -m worker", "worker"),
                         ("moto", "sqs endpoint"), ("valkey", "valkey"), ("redis-server", "valkey"),
                         ("postgres", "postgresql"), ("control_plane.run", "supervisor")):
        if marker in cmd:
            return name
    return "other"


class Stack:
    """The processes of the stack behind `base_url` (and the database at `database_url`), re-found each sample."""

    def __init__(self, base_url: str, database_url: str | None = None) -> None:
        self.host = urlsplit(base_url).hostname
        self.port = urlsplit(base_url).port or 80
        self.db_port = urlsplit(database_url).port if database_url else None
        self.local = self.host in ("127.0.0.1", "localhost", "::1")
        self._cache: tuple[float, dict[int, tuple[str, psutil.Process]]] | None = None

    def processes(self) -> dict[int, tuple[str, psutil.Process]]:
        """Cached for REFIND_S: finding the listeners reads every socket of the machine."""
        if self._cache is None or time.monotonic() - self._cache[0] > REFIND_S:
            self._cache = (time.monotonic(), self._find())
        return self._cache[1]

    def _find(self) -> dict[int, tuple[str, psutil.Process]]:
        if not self.local:
            return {}
        found: dict[int, tuple[str, psutil.Process]] = {}
        server = _listener(self.port)
        if server is None:
            return found
        root = server
        for parent in server.parents():
            if "control_plane.run" in _cmdline(parent):
                root = parent
                break
        for p in [root, *root.children(recursive=True)]:
            name = component(_cmdline(p))
            found[p.pid] = (name if root is not server else "server", p)
        if self.db_port and (postmaster := _listener(self.db_port)) is not None:
            for p in [postmaster, *postmaster.children(recursive=True)]:
                found[p.pid] = ("postgresql", p)
        return found

    def cpu_seconds(self) -> dict[int, tuple[str, float]]:
        """User + system CPU seconds of every process of the stack, found afresh: pid -> (component, seconds)."""
        self._cache = None
        out = {}
        for pid, (name, p) in self.processes().items():
            try:
                t = p.cpu_times()
                out[pid] = (name, t.user + t.system)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return out

    def metrics_urls(self) -> list[str]:
        urls = []
        for _, p in self.processes().values():
            try:
                env = p.environ()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            for key in ("CELL_METRICS_PORT", "WORKER_METRICS_PORT"):
                if env.get(key):
                    urls.append(f"http://127.0.0.1:{env[key]}/metrics")
        return sorted(set(urls))


def scrape(url: str) -> dict[str, float]:
    """Unlabelled samples by name, and the apply-lag buckets as `ledger_apply_lag_seconds_bucket{le}`."""
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def lag_quantile(before: dict[str, float], after: dict[str, float], q: float) -> float | None:
    """The q-quantile of the apply lags observed between two scrapes, estimated as Prometheus's histogram_quantile
    does: linearly inside the bucket it falls in (past the last finite bound: that bound). None: no lag observed."""
    buckets = []
    for name, count in after.items():
        if name.startswith(LAG_BUCKETS_METRIC + '{le="'):
            le = name[len(LAG_BUCKETS_METRIC) + 5:-2]
            buckets.append((float("inf") if le == "+Inf" else float(le), count - before.get(name, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = le, count
    return None


def interval_lags(previous: dict[str, dict[str, float]], now: dict[str, dict[str, float]],
                  qs: tuple[float, ...]) -> list[float | None]:
    """The apply lag quantiles between two scrapes of every endpoint (url -> samples), from the endpoints read at
    both ends whose counts did not go back (a restart): an endpoint that missed the last scrape would add every lag
    since it started, one restarted since would subtract."""
    merged_before: dict[str, float] = {}
    merged_now: dict[str, float] = {}
    total = LAG_BUCKETS_METRIC + '{le="+Inf"}'
    for url in now:
        before, after = previous.get(url, {}), now[url]
        if total not in before or total not in after or after[total] < before[total]:
            continue
        for k, v in before.items():
            merged_before[k] = merged_before.get(k, 0.0) + v
        for k, v in after.items():
            merged_now[k] = merged_now.get(k, 0.0) + v
    return [lag_quantile(merged_before, merged_now, q) for q in qs]


class Monitor(threading.Thread):
    def __init__(self, out_dir: Path, stack: Stack, metrics_urls: list[str] | None = None,
                 interval_s: float = 2.0, extra: dict[str, int] | None = None) -> None:
        super().__init__(daemon=True, name="loadtest-monitor")
        self.out_dir, self.stack, self.interval_s = Path(out_dir), stack, interval_s
        self.metrics_urls = metrics_urls
        self.extra = extra or {}  # component -> pid (the load generator)
        self._halt = threading.Event()
        self.cpu_s: dict[str, float] = {}
        self._last_cpu: dict[int, float] = {}
        self._before: set[int] = set()  # the machine's processes at the baseline: any other started during the run

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def _cpu_sample(self) -> None:
        procs = dict(self.stack.processes())
        for name, pid in self.extra.items():
            try:
                p = psutil.Process(pid)
                procs.update({c.pid: (name, c) for c in [p, *p.children(recursive=True)]})
            except psutil.NoSuchProcess:
                pass
        for pid, (name, p) in procs.items():
            try:
                t = p.cpu_times()
                total = t.user + t.system
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if pid not in self._last_cpu:  # first seen: from the baseline, or from its start if it began later
                self._last_cpu[pid] = total if pid in self._before else 0.0
            delta = total - self._last_cpu[pid]
            self._last_cpu[pid] = total
            self.cpu_s[name] = self.cpu_s.get(name, 0.0) + max(delta, 0.0)

    def run(self) -> None:
        urls = self.metrics_urls if self.metrics_urls is not None else self.stack.metrics_urls()
        t0 = time.monotonic()
        self._before = set(psutil.pids())
        previous = {u: scrape(u) for u in urls}
        self._cpu_sample()  # the baseline
        with (self.out_dir / "monitor.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["t", "unapplied_effects", "oldest_unapplied_age_s", "apply_lag_p50_s", "apply_lag_p90_s",
                        "apply_lag_p99_s", "stack_cpu_s"])
            while not self._halt.wait(self.interval_s):
                now = {u: scrape(u) for u in urls}
                # Read from the endpoints that answered with the queue (the cells); none: not measured, not 0.
                cells = [m for m in now.values() if "ledger_unapplied_effects" in m]
                queue = sum(m["ledger_unapplied_effects"] for m in cells) if cells else ""
                oldest = max(m.get("ledger_oldest_unapplied_age_seconds", 0.0) for m in cells) if cells else ""
                lags = interval_lags(previous, now, (0.5, 0.9, 0.99))
                self._cpu_sample()
                w.writerow([round(time.monotonic() - t0, 1), queue, oldest,
                            *("" if x is None else x for x in lags), round(sum(self.cpu_s.values()), 3)])
                f.flush()
                previous = now
        self._cpu_sample()
        (self.out_dir / "cpu.json").write_text(json.dumps(
            {"cpu_s": {k: round(v, 3) for k, v in sorted(self.cpu_s.items())}, "metrics_urls": urls,
             "seconds": round(time.monotonic() - t0, 1)}, indent=2))
