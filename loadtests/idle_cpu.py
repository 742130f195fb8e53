"""What an idle `make run` stack costs: CPU milliseconds per second of every component while nothing is asked of it.

Starts `python -m control_plane.run` on free ports and a temporary data directory (router, two cells with their
workers and beat, PostgreSQL, Valkey, the SQS endpoint) as the platform tests do, waits until it is ready and has
settled, then takes the CPU time of each of its processes from /proc over the window and prints ms of CPU per
second by component (a worker's forked beat child apart, as "worker beat"). With --baseline, a stack of another
checkout (e.g. a git worktree of an earlier commit) runs beside it and is measured over the same window.

    python -m loadtests.idle_cpu --duration 20 [--rounds 3] [--settle 10] [--baseline ../an-earlier-worktree]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import psutil

from loadtests import httpload
from loadtests.monitor import Stack
from loadtests.stack_cpu import ROOT, checkout_stacks


def name_of(process: psutil.Process, name: str) -> str:
    """The component, with a worker's beat child (a fork of the worker: the same command line) told apart."""
    if name != "worker":
        return name
    try:
        parent = process.parent()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return name
    return "worker beat" if parent is not None and " -m worker" in " ".join(parent.cmdline()) else name


def snapshot(stack: Stack) -> dict[int, tuple[str, float]]:
    """pid -> (component, user + system CPU seconds) of every process of the stack."""
    out = {}
    for pid, (name, p) in stack.processes().items():
        try:
            t = p.cpu_times()
            out[pid] = (name_of(p, name), t.user + t.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


def ms_per_s(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
             seconds: float) -> dict[str, float]:
    """CPU ms per second by component between two snapshots; a process born in between counts whole."""
    out: dict[str, float] = {}
    for pid, (name, spent) in after.items():
        delta = spent - before[pid][1] if pid in before else spent
        out[name] = out.get(name, 0.0) + max(delta, 0.0) * 1000 / seconds
    return dict(sorted(out.items()))


class IdleStack:
    """One `make run` stack of a checkout (its code in every process)."""

    def __init__(self, rig, root: Path, workdir: Path) -> None:
        os.environ["PYTHONPATH"] = str(root)  # the checkout's code, in every process of its stack
        rig.ROOT = root
        workdir.mkdir(parents=True, exist_ok=True)
        self.rig, self.proc = rig, rig.start_stack(workdir)
        dev = self.proc.dev
        self.stack = Stack(dev["base_url"], dev["control_plane_database_url"])

    def stop(self) -> None:
        self.rig.stop_stack(self.proc)


def measure(stacks: dict[str, IdleStack], duration_s: float) -> dict[str, dict[str, float]]:
    """Every stack over the same window: ms of CPU per second by component, and "total"."""
    before = {name: snapshot(s.stack) for name, s in stacks.items()}
    started = time.monotonic()
    time.sleep(duration_s)
    seconds = time.monotonic() - started
    out = {}
    for name, s in stacks.items():
        row = ms_per_s(before[name], snapshot(s.stack), seconds)
        row["total"] = sum(row.values())
        out[name] = row
    return out


def run(duration_s: float = 20.0, settle_s: float = 10.0, baseline: str | None = None, rounds: int = 1) -> dict:
    """`rounds` windows of duration_s each, every stack measured over the same windows; prints each window and, with
    several, the median of each component."""
    roots = {"this": ROOT, **({"baseline": Path(baseline).resolve()} if baseline else {})}
    with checkout_stacks(roots, "ledger-idle-cpu-", IdleStack) as stacks:
        time.sleep(settle_s)  # start-up work (migrations, first connections, caches) is not idle cost
        print(f"# idle make run stack: ms of CPU per second, {rounds} window(s) of {duration_s:.0f} s; "
              + ", ".join(f"{n} = {r}" for n, r in roots.items()), flush=True)
        windows = []
        for i in range(1, rounds + 1):
            windows.append(measure(stacks, duration_s))
            _print(f"window {i}", windows[-1])
        result = {name: {c: statistics.median(w[name].get(c, 0.0) for w in windows)
                         for c in {c for w in windows for c in w[name]}} for name in roots}
        if rounds > 1:
            _print("median", result)
        return result


def _print(label: str, result: dict[str, dict[str, float]]) -> None:
    components = sorted({k for row in result.values() for k in row if k != "total"}) + ["total"]
    print(f"{label:<14}" + "".join(f"{n:>12}" for n in result))
    for c in components:
        print(f"  {c:<12}" + "".join(f"{row.get(c, 0.0):>12.1f}" for row in result.values()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds waited after ready, before measuring")
    parser.add_argument("--baseline", help="another checkout (e.g. a git worktree of an earlier commit), measured "
                                           "beside this one over the same windows")
    parser.add_argument("--rounds", type=int, default=1, help="windows measured (with several, medians are printed)")
    args = parser.parse_args()
    httpload.interrupt_on_sigterm()
    run(args.duration, args.settle, args.baseline, args.rounds)


if __name__ == "__main__":
    main()
