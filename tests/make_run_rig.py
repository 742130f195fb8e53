"""The whole platform under `make run` (control_plane/run.py) on free ports and a temporary data directory, for
the platform tests (tests/integration/platform) and the fault tests (tests/chaos): start and stop it, find and
hurt its processes (the APIs, workers and their beat children, embedded servers, the postmaster), ledgerctl."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
RECOVERY_S_MAX = 120  # a restart is due within 0.5 s (10 s at most with back-off); the rest is a loaded 2-core machine


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def free_base(count: int, taken: set[int]) -> int:
    """A base port whose next `count` ports are free, in 10000-19990: below the ephemeral range and the range
    devstack.free_port draws the stack's own servers' ports from."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10000, 19990, 10)
        ports = {base + i for i in range(1, count + 1)}
        if not ports & taken and all(port_free(p) for p in ports):
            taken.update(ports)
            return base
    raise RuntimeError("no free port range")


def wait_until(condition, what: str, timeout_s: float = RECOVERY_S_MAX, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s}s"
        time.sleep(interval_s)


def gone(p: psutil.Process) -> bool:
    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Stack:
    def __init__(self, proc: subprocess.Popen, dev: dict, ports: list[int], tmp_path: Path) -> None:
        self.proc, self.dev, self.ports, self.tmp_path = proc, dev, ports, tmp_path
        self.seen: dict[int, psutil.Process] = {}  # every process of the stack met (tree()), for a final check
        self.tenants: dict[str, tuple[str, str]] = {}  # cell name -> (tenant id, API key)

    def tree(self) -> list[psutil.Process]:
        found = psutil.Process(self.proc.pid).children(recursive=True)
        self.seen.update({p.pid: p for p in found})
        return found

    def client(self, cell: str) -> httpx.Client:
        return httpx.Client(base_url=self.dev["base_url"], auth=self.tenants[cell], timeout=10)

    def log(self) -> str:
        return (self.tmp_path / "run.log").read_text(errors="replace")

    def child(self, module: str, **env: str) -> psutil.Process | None:
        """The running child of make run that is `python -m module` (or the binary `module`) and whose
        environment has `env`. Direct children only: a forked grandchild (the worker's beat) looks the same."""
        self.tree()
        for p in psutil.Process(self.proc.pid).children():
            try:
                cmd = p.cmdline()
                if (cmd[1:3] == ["-m", module] or module in Path(cmd[0]).name) and \
                        all(p.environ().get(k) == v for k, v in env.items()) and p.status() != psutil.STATUS_ZOMBIE:
                    return p
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, IndexError):
                continue
        return None

    def restarted(self, module: str, old: psutil.Process, **env: str) -> psutil.Process:
        return wait_until(lambda: (p := self.child(module, **env)) and p.pid != old.pid and p,
                          f"{module} {env} restarted by make run")

    def postmaster(self) -> psutil.Process | None:
        try:
            return psutil.Process(int((self.tmp_path / "ledger" / "pg" / "postmaster.pid").read_text().split()[0]))
        except (OSError, ValueError, IndexError, psutil.NoSuchProcess):
            return None

    def database_url(self, name: str) -> str:
        return self.dev["control_plane_database_url"].rsplit("/", 1)[0] + "/" + name

    def cell_database_url(self, cell: str) -> str:
        return self.database_url("ledger_" + cell.replace("-", "_"))

    def ledgerctl(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "CONTROL_PLANE_DATABASE_URL": self.dev["control_plane_database_url"],
               "CONTROL_PLANE_REDIS_URL": self.dev["redis_url"]}
        return subprocess.run([sys.executable, "-m", "control_plane.cli", *args, "--format", "json"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120, check=False)

    def ledgerctl_json(self, *args: str) -> dict:
        out = self.ledgerctl(*args)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)


def start_stack(tmp_path: Path, ready_s_max: float = 180) -> Stack:
    taken: set[int] = set()
    cell_base, metrics_base, router_base = free_base(2, taken), free_base(2, taken), free_base(1, taken)
    cell_metrics_base = free_base(2, taken)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LEDGER_", "CELL_", "WORKER_", "ROUTER_", "CONTROL_PLANE_"))}
    env.update({"LEDGER_DATA_DIR": str(tmp_path / "ledger"), "LEDGER_ROUTER_PORT": str(router_base + 1),
                "LEDGER_CELL_PORT_BASE": str(cell_base), "LEDGER_WORKER_METRICS_PORT_BASE": str(metrics_base),
                "LEDGER_CELL_METRICS_PORT_BASE": str(cell_metrics_base)})
    with open(tmp_path / "run.log", "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-m", "control_plane.run"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    dev = tmp_path / "ledger" / "dev.json"
    deadline = time.monotonic() + ready_s_max
    while not dev.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("make run did not get ready:\n" + (tmp_path / "run.log").read_text()[-3000:])
        time.sleep(0.2)
    ports = [router_base + 1, cell_base + 1, cell_base + 2, metrics_base + 1, metrics_base + 2]
    stack = Stack(proc, json.loads(dev.read_text()), ports, tmp_path)
    stack.env = env  # what a second `make run` in the same checkout would run with
    stack.tree()
    return stack


def stop_stack(stack: Stack) -> None:
    """The end of a stack no test looks at: killed, not stopped (a graceful stop waits out every drain; how `make run`
    stops is test_make_run.py's to test), its postmaster stopped at once; returns when every process of it is gone."""
    if stack.proc.poll() is None:
        stack.tree()  # every process of it now running, met (stack.seen)
        os.killpg(stack.proc.pid, signal.SIGKILL)
    leftovers = list(stack.seen.values())
    for p in leftovers:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    stack.proc.wait()
    postmaster = stack.postmaster()  # daemonized: not in the process tree
    if postmaster is not None and not gone(postmaster):
        postmaster.send_signal(signal.SIGQUIT)  # immediate shutdown, backends included
        leftovers.append(postmaster)
    wait_until(lambda: all(gone(p) for p in leftovers), "every process of the stack gone", 30, 0.05)


async def admin_connect(stack: Stack, database: str = "postgres") -> asyncpg.Connection:
    return await asyncpg.connect(stack.database_url(database), timeout=10)


async def queue_depth(stack: Stack, cell: str) -> int | None:
    """Unapplied balance effects in the cell's database (the async queue's truth), None when unreachable."""
    try:
        conn = await asyncpg.connect(stack.cell_database_url(cell), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        return await conn.fetchval("SELECT count(*) FROM balance_effects WHERE applied_at IS NULL", timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    finally:
        conn.terminate()
