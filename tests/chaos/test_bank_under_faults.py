"""The bank test under real faults, against one `make run` stack for the module: CLIENTS clients post transfers
between the accounts of a tenant on cell-1 (and BYSTANDER_CLIENTS for a tenant on cell-2), half with a balance
lock, each posting retried with the same Idempotency-Key until a definite answer. A fault is injected mid-run;
once the faulted cell serves postings again the clients stop and, after the sweep bound, the ledger is checked
against the clients' own record: every acknowledged posting exists exactly once, a refused one not at all, the
balances are the sums of the acknowledged postings, `ledgerctl verify` passes (the unapplied-age bound
included), and the other cell's tenant saw no error. Recovery times are printed at the end of the session."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from chaos_bank import RETRY_S_MAX, Bank
from make_run_rig import (
    Stack,
    admin_connect,
    gone,
    port_free,
    queue_depth,
    start_stack,
    stop_stack,
    wait_until,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

CLIENTS = 10
BYSTANDER_CLIENTS = 2
WARM_UP_ACKS = 20  # acknowledged on cell-1 before the fault
RECOVERED_ACKS = 20  # acknowledged on cell-1 by attempts sent after the fault healed, then the run stops
LOCK_WAIT_S = 2.0  # CELL_LOCK_WAIT_MS_MAX's default
IDLE_IN_TRANSACTION_S = 5.0  # WORKER_IDLE_IN_TRANSACTION_MS_MAX's default: a stalled worker's locks end then
SWEEP_BOUND_S = 9.0  # sweep after + 2 x interval (README, "Faults: the stated bounds")
STOP_S = 6.0  # how long the worker stays SIGSTOPped: past the idle-in-transaction bound
SLACK_S = 20.0  # a loaded 2-core machine: generous, a bound on waiting and not a speed assertion
RECOVERY_S_MAX = 120.0

RESULTS: list[dict] = []  # one row per fault, printed by conftest.py's terminal summary


@pytest.fixture(scope="module")
def stack(request):
    # Its own directory, kept when a test failed (logs in ledger/logs/): pytest's shared tmp dirs rotate.
    path = Path(tempfile.mkdtemp(prefix="ledger-chaos-"))
    failed_before = request.session.testsfailed
    stack = start_stack(path)
    try:
        for cell in ("cell-1", "cell-2"):
            tenant_id = f"bank-{cell}"
            out = stack.ledgerctl("tenants", "create", tenant_id, "--cell", cell)
            assert out.returncode == 0, out.stderr
            out = stack.ledgerctl("keys", "create", tenant_id)
            assert out.returncode == 0, out.stderr
            stack.tenants[cell] = (tenant_id, json.loads(out.stdout)["secret"])
        yield stack
    finally:
        stop_stack(stack)
        if request.session.testsfailed == failed_before:
            shutil.rmtree(path, ignore_errors=True)
        else:
            print(f"\nchaos: the stack's data and logs are kept in {path}", file=sys.stderr)


# ---- the faults: each injects, checks what it must on the way, and returns when the stack should heal ---------

def _cell1_api(stack: Stack) -> None:
    api = wait_until(lambda: stack.child("cell", CELL_NAME="cell-1"), "cell-1's API runs")
    api.send_signal(signal.SIGKILL)
    wait_until(lambda: gone(api), "cell-1's API dies")
    stack.restarted("cell", api, CELL_NAME="cell-1")


def _beat_of(worker: psutil.Process) -> psutil.Process:
    return wait_until(lambda: [p for p in worker.children() if p.status() != psutil.STATUS_ZOMBIE],
                      "the worker's beat child runs")[0]


def _cell1_worker_kill(stack: Stack) -> None:
    worker = wait_until(lambda: stack.child("worker", WORKER_CELL_NAME="cell-1"), "cell-1's worker runs")
    beat = _beat_of(worker)
    worker.send_signal(signal.SIGKILL)
    wait_until(lambda: gone(beat), "the beat child dies with its worker (no orphan)", 15)
    _beat_of(stack.restarted("worker", worker, WORKER_CELL_NAME="cell-1"))


def _cell1_worker_stop(stack: Stack) -> None:
    worker = wait_until(lambda: stack.child("worker", WORKER_CELL_NAME="cell-1"), "cell-1's worker runs")
    stalled = [worker, *worker.children(recursive=True)]  # a hung host: the worker and its beat child
    for p in stalled:
        p.send_signal(signal.SIGSTOP)
    try:
        time.sleep(STOP_S)  # the fault's length, not a wait for a condition
    finally:
        for p in stalled:
            p.send_signal(signal.SIGCONT)
    assert stack.child("worker", WORKER_CELL_NAME="cell-1").pid == worker.pid, "a stopped worker was restarted"


def _embedded(marker: str, server: str, url_key: str) -> Callable[[Stack], None]:
    def fault(stack: Stack) -> None:
        proc = wait_until(lambda: stack.child(marker), f"the {server} runs")
        proc.send_signal(signal.SIGKILL)
        wait_until(lambda: gone(proc), f"the {server} dies")
        stack.restarted(marker, proc)
        port = urlsplit(stack.dev[url_key]).port
        wait_until(lambda: not port_free(port), f"the {server} listens on its port again")
    return fault


def _postgres(sig: int) -> Callable[[Stack], None]:
    def fault(stack: Stack) -> None:
        postmaster = stack.postmaster()
        assert postmaster is not None
        postmaster.send_signal(sig)  # SIGQUIT: `pg_ctl stop -m immediate`; SIGKILL: a crash. make run restarts it
        wait_until(lambda: gone(postmaster), "PostgreSQL dies")
        wait_until(lambda: (p := stack.postmaster()) and p.pid != postmaster.pid and not gone(p),
                   "PostgreSQL is restarted by make run")
    return fault


def _cell1_backends(stack: Stack) -> None:
    async def terminate() -> int:
        admin = await admin_connect(stack)
        try:
            return await admin.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = 'ledger_cell_1' AND pid <> pg_backend_pid()")
        finally:
            await admin.close()
    assert asyncio.run(terminate()) > 0, "no session of cell-1's database to terminate"


@dataclass
class Fault:
    name: str
    inject: Callable[[Stack], None]
    shared: bool = False  # it hits cell-2 as well (the one embedded PostgreSQL): its client may retry too


FAULTS = [
    Fault("SIGKILL cell-1 API", _cell1_api),
    Fault("SIGKILL cell-1 worker (+beat)", _cell1_worker_kill),
    Fault(f"SIGSTOP cell-1 worker {STOP_S:g}s", _cell1_worker_stop),
    Fault("SIGKILL SQS endpoint", _embedded("moto.server", "sqs endpoint", "sqs_endpoint_url")),
    Fault("SIGKILL Valkey", _embedded("valkey", "valkey", "redis_url")),
    Fault("terminate cell-1 backends", _cell1_backends),
    Fault("PostgreSQL immediate restart", _postgres(signal.SIGQUIT), shared=True),
    Fault("SIGKILL postmaster", _postgres(signal.SIGKILL), shared=True),
]


# ---- the run ----------------------------------------------------------------------------------------------

async def _wait(condition, what: str, timeout_s: float, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s}s"
        await asyncio.sleep(interval_s)


async def _run(stack: Stack, fault: Fault) -> dict:
    base = stack.dev["base_url"]
    one, two = Bank("cell-1", base, stack.tenants["cell-1"]), Bank("cell-2", base, stack.tenants["cell-2"])
    await one.open()
    await two.open()
    stop = asyncio.Event()
    loops = [asyncio.create_task(one.client(i, stop)) for i in range(CLIENTS)]
    loops += [asyncio.create_task(two.client(i, stop)) for i in range(BYSTANDER_CLIENTS)]
    try:
        await _wait(lambda: len(one.acked()) >= WARM_UP_ACKS, "warm-up postings on cell-1", RECOVERY_S_MAX)
        t_fault = time.monotonic()
        await asyncio.to_thread(fault.inject, stack)
        t_healed = time.monotonic()
        await _wait(lambda: one.acked_after(t_healed) >= RECOVERED_ACKS, "cell-1 serves postings after the fault",
                    RECOVERY_S_MAX)
    finally:
        stop.set()
        # Each client finishes its posting in flight: retried to a definite answer, bounded by RETRY_S_MAX.
        await asyncio.wait_for(asyncio.gather(*loops), RETRY_S_MAX + 60)
    t_stopped = time.monotonic()
    for cell in ("cell-1", "cell-2"):
        await _wait(lambda c=cell: _empty(stack, c), f"{cell}'s queue empty within the sweep bound",
                    SWEEP_BOUND_S + SLACK_S, 0.05)
    t_empty = time.monotonic()
    return {"one": one, "two": two, "t_fault": t_fault, "t_healed": t_healed, "t_stopped": t_stopped,
            "t_empty": t_empty, "listed": {b.name: await b.listed() for b in (one, two)},
            "balances": {b.name: await b.balances() for b in (one, two)}}


async def _empty(stack: Stack, cell: str) -> bool:
    return await queue_depth(stack, cell) == 0


def _check_record(bank: Bank, listed: dict[str, list[str]], balances: dict[str, int]) -> None:
    strays = set(listed) - set(bank.postings)
    assert not strays, f"{bank.name}: transactions no client posted: {strays}"
    for p in bank.postings.values():
        ids = listed.get(p.key, [])
        if p.outcome == "acked":
            assert ids == [p.transaction_id], f"{bank.name}: acknowledged posting {p} found as {ids}"
        elif p.outcome == "refused":
            assert ids == [], f"{bank.name}: refused posting {p} ({p.code}) exists: {ids}"
        else:
            assert len(ids) <= 1, f"{bank.name}: unanswered posting {p} exists {len(ids)} times"
    unknown = [p for p in bank.postings.values() if p.outcome == "unknown"]
    assert not unknown, f"{bank.name}: postings with no definite answer in {RETRY_S_MAX}s: {unknown}"
    refusals = {p.code for p in bank.postings.values() if p.outcome == "refused"}
    assert refusals <= {"balance_lock_failed"}, f"{bank.name}: refused for {refusals}"
    assert balances == bank.expected_balances(), f"{bank.name}: balances drifted from the acknowledged postings"
    # A fault is answered as the cell's or the router's 503 (502 cell_failed, 504) with Retry-After, never a 500.
    internal = [a for a in bank.attempts if a.status is not None and a.status >= 500
                and (a.status not in (502, 503, 504) or not a.retry_after)]
    assert not internal, f"{bank.name}: a fault answered 500 or without Retry-After: {internal[:3]}"


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_the_bank_survives(stack, fault):
    run = asyncio.run(_run(stack, fault))
    one, two, t_fault = run["one"], run["two"], run["t_fault"]
    for bank in (one, two):
        _check_record(bank, run["listed"][bank.name], run["balances"][bank.name])
    # Both cells' verifications side by side: each is a process of its own, mostly its start-up.
    with ThreadPoolExecutor(2) as pool:
        verified = {cell: pool.submit(stack.ledgerctl, "verify", "--cell", cell) for cell in ("cell-1", "cell-2")}
    for cell, done in verified.items():
        out = done.result()
        assert out.returncode == 0, f"ledgerctl verify --cell {cell} after {fault.name}: {out.stdout}{out.stderr}"

    in_fault = [a for a in one.attempts if a.started >= t_fault and a.started <= run["t_healed"]]
    slowest = max((a.ended - a.started for a in in_fault), default=0.0)
    if fault.inject is _cell1_worker_stop:
        # Postings behind the stalled worker's locks are answered (201, or 503 lock_timeout) within the lock bound.
        assert slowest < LOCK_WAIT_S + SLACK_S, f"a posting waited {slowest:.1f}s behind the stopped worker"
    bystander_errors = [a for a in two.failures() if a.started >= t_fault - 1]
    if not fault.shared:
        assert not bystander_errors, f"cell-2's tenant saw errors during {fault.name}: {bystander_errors[:5]}"

    first = one.first_success_after(t_fault)
    RESULTS.append({
        "fault": fault.name,
        "first_201_s": first,
        "queue_empty_s": run["t_empty"] - t_fault,
        "stopped_s": run["t_stopped"] - t_fault,
        "acked": len(one.acked()),
        "refused": sum(1 for p in one.postings.values() if p.outcome == "refused"),
        "retried": len(one.failures()),
        "codes": sorted({str(a.code or a.status) for a in one.failures()}),
        "slowest_s": slowest,
        "bystander_errors": len(bystander_errors),
    })
