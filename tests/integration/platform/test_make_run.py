"""`make run` as a new user meets it, started once for the module: the whole platform starts, writes
.ledger/dev.json when ready, serves a posting through the router (queued, then applied by a worker), and the
README's curl lines and SDK script as written; it supervises like a small init (a process or embedded server that
dies is restarted, and a cell's failure stays in that cell); and it stops cleanly with nothing left behind. The
tests run in file order on the one stack."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from make_run_rig import ROOT, gone, port_free, start_stack, wait_until

RECOVERY_S_MAX = 90  # a restart is due within 0.5 s; the rest is the process starting on a 2-core machine


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("make-run"), ready_s_max=120)
    yield stack
    if stack.proc.poll() is None:  # a test failed before the stop: leave nothing behind
        leftovers = stack.tree()
        os.killpg(stack.proc.pid, signal.SIGKILL)
        for p in leftovers:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        stack.proc.wait()
        postmaster = stack.postmaster()  # daemonized: not in the process tree
        if postmaster is not None:
            postmaster.send_signal(signal.SIGQUIT)  # immediate shutdown, backends included


def make_accounts(http: httpx.Client) -> tuple[str, str]:
    ledger = http.post("/api/ledgers", json={"name": f"l-{uuid.uuid4().hex[:8]}"})
    assert ledger.status_code == 201, ledger.text
    cash, alice = (http.post("/api/ledger_accounts", json={
        "name": name, "ledger_id": ledger.json()["id"], "normal_balance": nb, "currency": "USD"}).json()["id"]
        for name, nb in (("cash", "debit"), ("alice", "credit")))
    return cash, alice


def post(http: httpx.Client, cash: str, alice: str, amount: int = 2500) -> httpx.Response:
    ledger_id = http.get(f"/api/ledger_accounts/{cash}").json()["ledger_id"]
    return http.post("/api/ledger_transactions", json={"ledger_id": ledger_id, "status": "posted", "ledger_entries": [
        {"ledger_account_id": cash, "direction": "debit", "amount": amount},
        {"ledger_account_id": alice, "direction": "credit", "amount": amount}]})


def serves(http: httpx.Client) -> bool:
    try:
        return http.get("/api/ledgers").status_code == 200
    except httpx.TransportError:
        return False


def applied(http: httpx.Client, account: str, lock_version: int) -> bool:
    """Whether a worker applied the queued entries up to `lock_version` to the account's balances."""
    r = http.get(f"/api/ledger_accounts/{account}")
    return r.status_code == 200 and r.json()["lock_version"] >= lock_version


def test_make_run_serves_the_api_through_the_router(platform):
    dev, ports = platform.dev, platform.ports
    assert dev["base_url"] == f"http://127.0.0.1:{ports[0]}" and dev["tenant_id"] == "demo"
    with httpx.Client(base_url=dev["base_url"], auth=(dev["tenant_id"], dev["api_key"]), timeout=10) as http:
        cash, alice = make_accounts(http)
        r = post(http, cash, alice)
        assert r.status_code == 201, r.text
        unapplied = http.get(f"/api/ledger_accounts/{alice}", params={"balances[include_unapplied]": "true"}).json()
        assert unapplied["balances"]["posted_balance"]["amount"] == 2500
        wait_until(lambda: applied(http, alice, 1), "the worker applies the queued entries", 15)
        assert http.get(f"/api/ledger_accounts/{alice}").json()["balances"]["posted_balance"]["amount"] == 2500
        assert httpx.get(dev["base_url"] + "/api/ledgers", auth=("demo", "wrong")).status_code == 401


def readme_code(section: str, language: str) -> str:
    """The code of the README's `language` blocks in the section under `section` (up to the next heading), joined."""
    lines = (ROOT / "README.md").read_text().splitlines()
    code, fenced, ours = [], False, False
    for line in lines[lines.index(section) + 1:]:
        if line.startswith("```"):
            fenced, ours = not fenced, not fenced and line == "```" + language
        elif ours:
            code.append(line)
        elif not fenced and line.startswith("#"):
            break
    assert code, f"no {language} block under {section!r}"
    return "\n".join(code) + "\n"


def in_readme_folder(platform, tmp_path):
    """A folder where the README's `.ledger/dev.json` is this stack's, as in the checkout `make run` ran in."""
    (tmp_path / ".ledger").symlink_to(platform.tmp_path / "ledger")
    return tmp_path


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's API lines use curl, not installed here")
def test_the_readme_curl_lines_run_as_written(platform, tmp_path):
    script = readme_code("## The API in a few curl lines", "sh")
    run = subprocess.run(["bash", "-e", "-c", script], cwd=in_readme_folder(platform, tmp_path),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    decoder, answers, at = json.JSONDecoder(), [], 0
    while at < len(run.stdout):  # the answers, one after the other on one line
        answer, at = decoder.raw_decode(run.stdout, at)
        answers.append(answer)
    funded, refused, now, at_new_year, at_version_1, cash_unapplied, entries = answers
    assert funded["status"] == "posted"
    assert funded["ledger_entries"][1]["resulting_ledger_account_balances"]["posted_balance"]["amount"] == 2500
    assert (refused["status"], refused["code"]) == (422, "balance_lock_failed")
    posted = [a["balances"]["posted_balance"]["amount"] for a in (now, at_new_year, at_version_1, cash_unapplied)]
    assert posted == [2500, 0, 2500, 2500]
    assert [(e["amount"], e["direction"]) for e in entries] == [(2500, "credit")]
    assert entries[0]["resulting_ledger_account_balances"]["posted_balance"]["amount"] == 2500


def test_the_readme_sdk_script_prints_what_it_says(platform, tmp_path):
    """Both Python blocks, one script, through Modern Treasury's own SDK; the output its comments state."""
    script = readme_code("### With Modern Treasury's official Python SDK", "python")
    run = subprocess.run([sys.executable, "-c", script], cwd=in_readme_folder(platform, tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "2500", "balance_lock_failed", "500",
        "2500 credit {'leg': 'in'}", "2000 debit {}",  # the hold's first entry (1000) was discarded when raised
        "2500", "2500", "pending 2500", "True", "balance_monitor.created", "balance_monitor.triggered"]


def test_the_ledgerctl_lines_make_run_prints_run_as_printed(platform, tmp_path):
    """Pasted into a new user's shell (no virtualenv on its PATH, in the checkout): the commands work, and a local
    webhook receiver is accepted by ledgerctl as the stack's cells accept it."""
    lines = platform.log().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("ledgerctl:  export "))
    exports, commands = lines[at].strip().removeprefix("ledgerctl:").strip(), lines[at + 1].strip()
    ledgerctl = commands.split(" cells list")[0]
    script = f"{exports}\n{commands}\n{ledgerctl} webhooks add demo http://127.0.0.1:9/hook --format json\n"
    user_env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTROL_PLANE_", "LEDGER_"))}
    user_env["PATH"] = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                       if not (Path(p) / "ledgerctl").exists())
    run = subprocess.run(["bash", "-e", "-c", script], cwd=ROOT, env=user_env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "http://127.0.0.1:9/hook" in run.stdout


def test_the_demo_tenant_takes_a_load_test_without_the_default_rate_limit(platform):
    """`make loadtest` drives the demo tenant past the router's default limit for tenants (1,000 requests/s)."""
    demo = platform.ledgerctl_json("tenants", "show", "demo")
    assert demo["rate_limit_per_s"] == 100_000 and demo["rate_burst"] == 100_000


def test_a_tenant_on_each_cell(platform):
    """Set-up for the fault tests: one tenant per cell, created with ledgerctl, served through the router."""
    for cell in ("cell-1", "cell-2"):
        tenant_id = f"t-{cell}-{uuid.uuid4().hex[:6]}"
        assert platform.ledgerctl_json("tenants", "create", tenant_id, "--cell", cell)["cell"] == cell
        platform.tenants[cell] = (tenant_id, platform.ledgerctl_json("keys", "create", tenant_id)["secret"])
        with platform.client(cell) as http:  # the route reaches the router by pub/sub (or its periodic reload)
            wait_until(lambda: http.get("/api/ledgers").status_code == 200, f"the router serves {tenant_id}", 30)


def test_a_killed_cell_api_is_restarted_and_the_other_cell_sees_nothing(platform):
    with platform.client("cell-1") as one, platform.client("cell-2") as two:
        cash1, alice1 = make_accounts(one)
        cash2, alice2 = make_accounts(two)
        api = platform.child("cell", CELL_NAME="cell-1")
        other_api = platform.child("cell", CELL_NAME="cell-2")
        router = platform.child("router")
        api.send_signal(signal.SIGKILL)
        wait_until(lambda: gone(api), "cell-1's API dies")

        # Until cell-1 serves again, cell-2's tenant is served through the router: every request answered 2xx.
        answered, deadline = 0, time.monotonic() + RECOVERY_S_MAX
        while True:
            r = post(two, cash2, alice2, 1)
            assert r.status_code == 201, f"cell-2's tenant during cell-1's outage: {r.status_code} {r.text}"
            r = two.get(f"/api/ledger_accounts/{alice2}")
            assert r.status_code == 200, f"cell-2's tenant during cell-1's outage: {r.status_code} {r.text}"
            answered += 1
            if serves(one):
                break
            assert time.monotonic() < deadline, f"cell-1 is not back within {RECOVERY_S_MAX}s"
            time.sleep(0.1)
        assert answered >= 1
        r = post(one, cash1, alice1)
        assert r.status_code == 201, r.text  # a posting for cell-1's tenant succeeds through the router again

        restarted = platform.child("cell", CELL_NAME="cell-1")
        assert restarted is not None and restarted.pid != api.pid
        assert other_api.is_running() and router.is_running(), "the other cell or the router was restarted"
        assert "[run] cell-1 api exited with -9; restarting in 0.5s" in platform.log()
        assert platform.proc.poll() is None


def test_a_killed_worker_takes_its_beat_child_along_and_is_restarted(platform):
    worker = wait_until(lambda: platform.child("worker", WORKER_CELL_NAME="cell-1"), "cell-1's worker runs")
    beat = wait_until(lambda: [p for p in worker.children() if p.status() != psutil.STATUS_ZOMBIE],
                      "cell-1's worker has started its beat child")[0]
    platform.tree()
    worker.send_signal(signal.SIGKILL)
    wait_until(lambda: gone(beat), "the beat child dies with its worker (no orphan)", 10)
    restarted = wait_until(lambda: (p := platform.child("worker", WORKER_CELL_NAME="cell-1")) and p.pid != worker.pid
                           and p, "cell-1's worker is restarted")
    wait_until(lambda: [p for p in restarted.children() if p.status() != psutil.STATUS_ZOMBIE],
               "the restarted worker has its beat child")
    assert "[run] cell-1 worker exited with -9; restarting in 0.5s" in platform.log()
    with platform.client("cell-1") as http:  # the new worker (and beat) apply postings
        cash, alice = make_accounts(http)
        assert post(http, cash, alice).status_code == 201
        wait_until(lambda: applied(http, alice, 1), "the restarted worker applies a posting")


@pytest.mark.parametrize("server, marker", [("sqs endpoint", "moto.server"), ("valkey", "valkey")])
def test_a_killed_embedded_server_is_restarted_on_its_port(platform, server, marker):
    url = platform.dev["sqs_endpoint_url" if server == "sqs endpoint" else "redis_url"]
    port = urlsplit(url).port
    proc = platform.child(marker)
    assert proc is not None, f"no {server} process under make run"
    proc.send_signal(signal.SIGKILL)
    wait_until(lambda: gone(proc), f"the {server} dies")
    restarted = wait_until(lambda: (p := platform.child(marker)) and p.pid != proc.pid and p,
                           f"the {server} is restarted")
    wait_until(lambda: not port_free(port), f"the {server} listens on its port {port} again")
    assert f"[run] {server} exited with -9; restarting in 0.5s" in platform.log()
    # Clients reconnect: a posting is queued and a worker applies it (through the broker and the queue).
    with platform.client("cell-2") as http:
        cash, alice = make_accounts(http)
        r = post(http, cash, alice)
        assert r.status_code == 201, r.text
        wait_until(lambda: applied(http, alice, 1), f"a worker applies a posting after the {server} restart")
    assert restarted.is_running()


def test_a_killed_postgresql_is_restarted_on_its_data_directory(platform):
    postmaster = platform.postmaster()
    assert postmaster is not None
    postmaster.send_signal(signal.SIGKILL)
    wait_until(lambda: gone(postmaster), "PostgreSQL dies")
    wait_until(lambda: (p := platform.postmaster()) and p.pid != postmaster.pid and not gone(p),
               "PostgreSQL is restarted")
    assert "[run] postgres (postmaster pid" in platform.log()
    # The cells, the router and the workers reconnect (or are restarted): a posting is served and applied.
    for cell in ("cell-1", "cell-2"):
        with platform.client(cell) as http:
            wait_until(lambda h=http: serves(h), f"{cell} serves again after the PostgreSQL restart")
            cash, alice = make_accounts(http)
            assert post(http, cash, alice).status_code == 201
            wait_until(lambda h=http, a=alice: applied(h, a, 1), f"{cell}'s worker applies a posting after it")


def test_a_second_make_run_beside_it_refuses_and_leaves_its_credentials(platform):
    """A second `make run` in the same checkout while one runs stops at once, saying why, and touches nothing of the
    first: its .ledger/dev.json, which the README's lines and `make loadtest` read, stays."""
    dev = platform.tmp_path / "ledger" / "dev.json"
    second = subprocess.run([sys.executable, "-m", "control_plane.run"], cwd=ROOT, env=platform.env,
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"port {platform.ports[0]} is in use" in second.stderr
    assert dev.exists(), "the second make run removed the first one's dev.json"
    assert json.loads(dev.read_text()) == platform.dev
    with httpx.Client(base_url=platform.dev["base_url"], auth=(platform.dev["tenant_id"], platform.dev["api_key"]),
                      timeout=10) as http:
        assert serves(http)


def test_stopping_make_run_leaves_nothing_behind(platform):
    platform.tree()
    pg_port = urlsplit(platform.dev["control_plane_database_url"]).port
    server_ports = [pg_port, urlsplit(platform.dev["redis_url"]).port, urlsplit(platform.dev["sqs_endpoint_url"]).port]
    postmaster = platform.postmaster()  # daemonized: not in the tree
    assert postmaster is not None
    assert len(platform.seen) >= 8, f"too few processes seen: {platform.seen}"

    platform.proc.send_signal(signal.SIGTERM)  # what Ctrl-C does
    assert platform.proc.wait(60) == 0, platform.log()[-3000:]
    assert not (platform.tmp_path / "ledger" / "dev.json").exists()
    alive = [p for p in [*platform.seen.values(), postmaster] if not gone(p)]
    assert not alive, f"processes of the stack still run after the stop: {alive}"
    assert all(port_free(p) for p in platform.ports + server_ports), "a server still listens after the stop"
