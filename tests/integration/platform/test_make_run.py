"""`make run` as a new user meets it: the whole platform starts, writes .ledger/dev.json when ready, serves a
posting through the router (queued, then applied by a worker), and stops cleanly with nothing left behind."""

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

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def free_base(count: int, taken: set[int]) -> int:
    """A base port whose next `count` ports are free, below the kernel's ephemeral range (32768 and up on
    Linux), where no outgoing connection can take a port before the stack binds it; and below the range that
    devstack.free_port draws from (20000-32000), where the stack under test picks its own servers' ports."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10000, 19990, 10)
        ports = {base + i for i in range(1, count + 1)}
        if not ports & taken and all(port_free(p) for p in ports):
            taken.update(ports)
            return base
    raise RuntimeError("no free port range")


@pytest.fixture
def platform(tmp_path):
    taken: set[int] = set()
    cell_base, metrics_base, router_base = free_base(2, taken), free_base(2, taken), free_base(1, taken)
    cell_metrics_base = free_base(2, taken)
    router_port = router_base + 1
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LEDGER_", "CELL_", "WORKER_", "ROUTER_", "CONTROL_PLANE_"))}
    env.update({"LEDGER_DATA_DIR": str(tmp_path / "ledger"), "LEDGER_ROUTER_PORT": str(router_port),
                "LEDGER_CELL_PORT_BASE": str(cell_base), "LEDGER_WORKER_METRICS_PORT_BASE": str(metrics_base),
                "LEDGER_CELL_METRICS_PORT_BASE": str(cell_metrics_base)})
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "control_plane.run"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    dev = tmp_path / "ledger" / "dev.json"
    deadline = time.monotonic() + 120
    while not dev.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("make run did not get ready:\n" + (tmp_path / "run.log").read_text()[-3000:])
        time.sleep(0.2)
    yield proc, json.loads(dev.read_text()), [router_port, cell_base + 1, cell_base + 2], tmp_path
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


def test_make_run_serves_the_api_through_the_router_and_stops_cleanly(platform):
    proc, dev, ports, tmp_path = platform
    assert dev["base_url"] == f"http://127.0.0.1:{ports[0]}" and dev["tenant_id"] == "demo"
    with httpx.Client(base_url=dev["base_url"], auth=(dev["tenant_id"], dev["api_key"]), timeout=10) as http:
        ledger = http.post("/api/ledgers", json={"name": "smoke"}).json()
        cash, alice = (http.post("/api/ledger_accounts", json={
            "name": name, "ledger_id": ledger["id"], "normal_balance": nb, "currency": "USD"}).json()["id"]
            for name, nb in (("cash", "debit"), ("alice", "credit")))
        r = http.post("/api/ledger_transactions", json={"ledger_id": ledger["id"], "status": "posted", "ledger_entries": [
            {"ledger_account_id": cash, "direction": "debit", "amount": 2500},
            {"ledger_account_id": alice, "direction": "credit", "amount": 2500}]})
        assert r.status_code == 201, r.text
        unapplied = http.get(f"/api/ledger_accounts/{alice}", params={"balances[include_unapplied]": "true"}).json()
        assert unapplied["balances"]["posted_balance"]["amount"] == 2500
        deadline = time.monotonic() + 15  # the cell's worker applies the queued entries
        while http.get(f"/api/ledger_accounts/{alice}").json()["lock_version"] != 1:
            assert time.monotonic() < deadline, "the worker did not apply the queued entries"
            time.sleep(0.2)
        assert http.get(f"/api/ledger_accounts/{alice}").json()["balances"]["posted_balance"]["amount"] == 2500
        assert httpx.get(dev["base_url"] + "/api/ledgers", auth=("demo", "wrong")).status_code == 401

    proc.send_signal(signal.SIGTERM)  # what Ctrl-C does
    assert proc.wait(60) == 0
    assert not (tmp_path / "ledger" / "dev.json").exists()
    assert all(port_free(p) for p in ports), "a server still listens after the stop"
