"""The Locust suite's smoke run: `python -m loadtests.run` (what `make loadtest` runs) against a real cell app
(uvicorn, on the session's PostgreSQL, sync mode) for a few seconds, every user class and the load shape on:
zero failures, exit code 0, and the reports written. Plus the pure parts: thresholds, shape, report."""

from __future__ import annotations

import asyncio
import base64
import csv
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from xml.etree import ElementTree

import asyncpg
import httpx
import pytest
import uvicorn

from cell.api.app import create_app
from cell.service.tenants import create_api_key, create_tenant
from cell.settings import load_settings
from control_plane.devstack import free_port
from loadtests import report
from loadtests.mix import REQUESTS, evaluate, shape_stages, thresholds, weights

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
async def cell_server(make_database):
    """The module's cell app, started once: (its URL, its database URL); each test loads a tenant of its own."""
    url = make_database(f"loadtest_{uuid.uuid4().hex[:6]}")
    settings = load_settings(("LOADTEST_UNUSED_",), name="cell-lt", database_url=url, posting_mode="sync",
                             db_pool_min=1, db_pool_max=8)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, lifespan="on",
                                           log_level="warning", access_log=False))
    task = asyncio.create_task(server._serve())  # not serve(): it would take the test process's signals
    for _ in range(500):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}", url
    server.should_exit = True
    await task


@pytest.fixture
async def cell(cell_server):
    """A fresh tenant on the module's cell: (the cell's URL, the tenant, its API key)."""
    host, url = cell_server
    conn = await asyncpg.connect(url)
    try:
        tenant = f"lt-{uuid.uuid4().hex[:8]}"
        await create_tenant(conn, tenant, "load test smoke")
        _, secret = await create_api_key(conn, tenant)
    finally:
        await conn.close()
    return host, tenant, secret


@pytest.mark.timeout(90)
async def test_a_short_locust_run_has_no_failure_and_writes_its_reports(cell, tmp_path):
    env = {**os.environ, "LOADTEST_WEIGHTS": "investing=3,card=1,statement=1,backdated=1",
           "LOADTEST_SHAPE": "users=4,spike_users=8,ramp=1,steady=1,spike=2,steady2=1",
           "LOADTEST_INVESTORS": "10", "LOADTEST_CARDS": "5", "LOADTEST_STATEMENT_PER_PAGE": "2",
           "LOADTEST_WAIT_MAX_S": "0.05", "LOADTEST_P90_MS": "5000", "LOADTEST_MAX_ERROR_RATE": "0"}
    code, out = await loadtest(cell, tmp_path / "first", env)
    assert code == 0, out[-4000:]

    [run_dir] = list((tmp_path / "first").iterdir())
    for name in ("report.html", "locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv",
                 "run.json", "thresholds.json", "report.md", "monitor.csv", "cpu.json"):
        assert (run_dir / name).is_file(), f"{name} missing: {sorted(p.name for p in run_dir.iterdir())}\n{out}"
    stats = {r["Name"]: r for r in csv.DictReader((run_dir / "locust_stats.csv").open())}
    assert stats["Aggregated"]["Failure Count"] == "0", (run_dir / "locust_failures.csv").read_text()
    for key, name in REQUESTS.items():  # every user class ran
        assert int(stats[name]["Request Count"]) > 0, f"no {key} request"
    judged = json.loads((run_dir / "thresholds.json").read_text())
    assert judged["broken"] == []
    # Locust rewrites its stats CSV once a second, not at the end: the files hold the totals the thresholds were
    # judged on (report.md and a later --previous read them), not a snapshot missing the last second.
    assert {name: int(stats[name]["Request Count"]) for name in REQUESTS.values()} == {
        r["name"]: r["requests"] for r in judged["rows"]}
    users = [float(r["User Count"]) for r in csv.DictReader((run_dir / "locust_stats_history.csv").open())]
    assert max(users) == 8, "the shape's spike was not reached"
    cpu = json.loads((run_dir / "cpu.json").read_text())["cpu_s"]  # the cell here is the test process
    assert cpu["load generator"] > 0 and cpu["server"] > 0, cpu
    assert (run_dir / "monitor.csv").read_text().startswith("t,unapplied_effects,")
    md = (run_dir / "report.md").read_text()
    assert "### CPU by component" in md
    assert "## Throughput and latency per request type" in md and "**Passed.**" in md
    assert REQUESTS["card_authorize"] in md and "![Throughput" in md
    assert "## Against Modern Treasury's published load test" in md
    for chart in ("throughput.png", "cpu.png"):  # matplotlib is a development dependency: PNG
        assert (run_dir / chart).read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), chart
        assert f"]({chart})" in md, chart

    # A second report of the same run against itself: the regression table, nothing flagged.
    md = report.generate(run_dir, previous=run_dir).read_text()
    assert "## Regression against" in md and "**regression" not in md and "Not the same load" not in md

    # A run that breaks its p90 threshold exits non-zero, and says why; compared with the first run. Its 2 s count
    # from before the books' set-up: books of one investor and one card leave the most of them for requests.
    env = {**env, "LOADTEST_SHAPE": "", "LOADTEST_P90_MS": "default=0.001", "LOADTEST_WEIGHTS": "statement=0,backdated=0",
           "LOADTEST_INVESTORS": "1", "LOADTEST_CARDS": "1"}
    code, out = await loadtest(cell, tmp_path / "second", env, "--previous", str(run_dir), "-u", "2", "-r", "2",
                               "-t", "2s")
    assert code == 1, out[-4000:]
    [second] = list((tmp_path / "second").iterdir())
    broken = json.loads((second / "thresholds.json").read_text())["broken"]
    assert any(b.startswith("invest_read: p90") for b in broken), broken
    md = (second / "report.md").read_text()
    assert "**Failed:**" in md and f"## Regression against {run_dir.name}" in md
    assert "Not the same load" in md and "users None → 2" in md and "weights {" in md, md  # shaped, then -u 2


async def loadtest(cell, reports: Path, env: dict, *args: str) -> tuple[int, str]:
    """`python -m loadtests.run` (what `make loadtest` runs) against the cell: its exit code and output."""
    host, tenant, key = cell
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtests.run", "--host", host, "--tenant", tenant, "--api-key", key,
        "--reports", str(reports), "--loglevel", "WARNING", "--only-summary", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    try:
        out = (await asyncio.wait_for(proc.communicate(), 60))[0].decode(errors="replace")
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)  # Locust's workers too: nothing left behind on the shared machine
        await proc.wait()
        raise
    return proc.returncode, out


def test_thresholds_break_on_p90_per_request_type_and_on_the_error_rate():
    rows = [{"key": "invest_write", "requests": 100, "failures": 0, "p90_ms": 250.0},
            {"key": "invest_read", "requests": 300, "failures": 2, "p90_ms": 40.0}]
    assert evaluate(rows, {"default": 1000}, 0.01) == []
    assert evaluate(rows, {"default": 1000, "invest_read": 30}, 0.01) == ["invest_read: p90 40 ms > 30 ms"]
    assert evaluate(rows, {"default": 200}, 0.001) == ["error rate 0.0050 > 0.001", "invest_write: p90 250 ms > 200 ms"]
    assert evaluate([], {"default": 1000}, 0.01) == ["no request was made"]


def test_the_shape_ramps_holds_spikes_and_holds():
    assert shape_stages("users=10,spike_users=30,ramp=10,steady=20,spike=5,steady2=15") == [
        (10, 10, 1.0), (30, 10, 1.0), (35, 30, 30), (50, 10, 30)]


def test_the_regression_table_flags_slower_percentiles_and_lower_throughput():
    base = {"type": "GET", "requests": 10, "failures": 0, "avg": 1, "max": 1}
    before = [{**base, "name": "a", "rps": 100.0, "p50": 10.0, "p90": 20.0, "p99": 30.0}]
    now = [{**base, "name": "a", "rps": 80.0, "p50": 10.0, "p90": 25.0, "p99": 30.0},
           {**base, "name": "b", "rps": 5.0, "p50": 1.0, "p90": 2.0, "p99": 3.0}]
    table = "\n".join(report.regression_table(now, before))
    assert "**regression: rps, p90**" in table and "| b | new: 5.0" in table


def write_stats(run_dir: Path, rows: list[list]) -> None:
    """A Locust stats CSV of these rows (type, name, requests, failures, req/s, p50, p90, p99, average, max)."""
    with (run_dir / f"{report.PREFIX}_stats.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Type", "Name", "Request Count", "Failure Count", "Requests/s", "50%", "90%", "99%",
                         "Average Response Time", "Max Response Time"])
        writer.writerows(rows)


def test_the_report_says_when_the_rate_limit_refused_requests(tmp_path):
    """A load over the tenant's rate limit measures the limiter: the report says how many 429s and what to do."""
    write_stats(tmp_path, [["GET", "GET /api/ledger_accounts/{id} [investing]", 100, 42, 50, 5, 9, 12, 6, 20],
                           ["", "Aggregated", 100, 42, 50, 5, 9, 12, 6, 20]])
    with (tmp_path / f"{report.PREFIX}_failures.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Method", "Name", "Error", "Occurrences", "First Seen", "Last Seen"])
        writer.writerow(["GET", "GET /api/ledger_accounts/{id} [investing]", "LocustBadStatusCode(code=429)", 30, "", ""])
        writer.writerow(["POST", "POST /api/ledger_transactions [investing]",
                         "CatchResponseError('429: {\"code\":\"rate_limited\"}')", 10, "", ""])
        writer.writerow(["GET", "GET /api/ledger_accounts/{id} [investing]", "LocustBadStatusCode(code=503)", 2, "", ""])
    (tmp_path / "run.json").write_text(json.dumps({"host": "http://x", "tenant_id": "acme", "weights": {}}))
    assert report.rate_limited(tmp_path) == 40
    text = report.generate(tmp_path).read_text()
    assert ("40 requests were refused by the tenant's rate limit (429)" in text
            and "ledgerctl tenants rate-limit acme --per-s N" in text)

    (tmp_path / f"{report.PREFIX}_failures.csv").write_text("Method,Name,Error,Occurrences,First Seen,Last Seen\n")
    assert report.rate_limited(tmp_path) == 0
    assert "rate limit" not in report.generate(tmp_path).read_text()


def test_without_matplotlib_the_report_draws_its_charts_in_svg(tmp_path, monkeypatch):
    """Where matplotlib is not installed (a runner elsewhere), the same charts come as well-formed SVG."""
    monkeypatch.setattr(report, "_matplotlib", lambda: None)
    columns = ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", "50%", "66%", "75%", "80%",
               "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%", "Total Request Count", "Total Failure Count"]
    with (tmp_path / f"{report.PREFIX}_stats_history.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for t in range(3):
            for name in ("GET /a", "Aggregated"):
                writer.writerow([1_700_000_000 + t, 4, "GET", name, 10, 0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                 10 * (t + 1), 0])
    write_stats(tmp_path, [["GET", "GET /a", 30, 0, 10, 5, 9, 12, 6, 20], ["", "Aggregated", 30, 0, 10, 5, 9, 12, 6, 20]])
    (tmp_path / "cpu.json").write_text(json.dumps({"seconds": 3, "cpu_s": {"cell": 0.03, "postgresql": 0.06}}))
    md = report.generate(tmp_path).read_text()
    for chart in ("throughput.svg", "latency-get-a.svg", "cpu.svg"):
        assert ElementTree.parse(tmp_path / chart).getroot().tag.endswith("svg") and f"]({chart})" in md, chart
    assert "2.000 ms" in (tmp_path / "cpu.svg").read_text()  # postgresql: 0.06 s over 30 requests


def test_the_report_sets_the_run_against_modern_treasurys_published_load_test(tmp_path):
    """1,200 writes/s + 3,600 balance reads/s at p90 297 / 89 ms: each figure of the run beside it, met or not."""
    write_stats(tmp_path, [["POST", REQUESTS["invest_write"], 1000, 0, 900, 10, 40, 60, 12, 90],
                           ["POST", REQUESTS["card_authorize"], 1000, 0, 350, 10, 30, 60, 12, 90],
                           ["GET", REQUESTS["invest_read"], 3000, 0, 2700, 5, 95, 120, 6, 200],
                           ["", "Aggregated", 5000, 0, 3950, 6, 60, 110, 8, 200]])
    md = report.generate(tmp_path).read_text()
    assert "## Against Modern Treasury's published load test" in md
    assert "| writes/s (every POST /api/ledger_transactions) | 1,200.0 | 1,250.0 | met |" in md
    assert "| balance reads/s (GET /api/ledger_accounts/{id}) | 3,600.0 | 2,700.0 | not met |" in md
    assert "| p90 write ms (the investing write) | 297 | 40 | met |" in md
    assert "| p90 balance read ms | 89 | 95 | not met |" in md


SHORT = {"LOADTEST_INVESTORS": "2", "LOADTEST_CARDS": "2", "LOADTEST_WAIT_MAX_S": "0.05", "LOADTEST_P90_MS": "5000",
         "LOADTEST_MAX_ERROR_RATE": "0", "LOADTEST_SHAPE": ""}


@pytest.mark.timeout(60)
async def test_a_run_whose_tasks_raise_fails_its_thresholds(cell, tmp_path):
    """A task that raises makes no request, so no failure: the run must not pass on the requests the others made.
    Here no investor accounts: every investing task raises IndexError, the card users still post."""
    env = {**os.environ, **SHORT, "LOADTEST_INVESTORS": "0",
           "LOADTEST_WEIGHTS": "investing=1,card=1,statement=0,backdated=0"}
    code, out = await loadtest(cell, tmp_path, env, "--no-monitor", "-u", "2", "-r", "2", "-t", "2s")
    assert code == 1, out[-4000:]
    [run_dir] = list(tmp_path.iterdir())
    broken = json.loads((run_dir / "thresholds.json").read_text())["broken"]
    assert any("exception" in b for b in broken), broken
    assert "**Failed:**" in (run_dir / "report.md").read_text()


@pytest.mark.timeout(60)
async def test_a_misspelt_threshold_is_refused_before_the_run_not_after_it(cell, tmp_path):
    """LOADTEST_P90_MS with an unknown request type: refused at once (exit 2, saying which), not found when Locust
    quits, after the whole run, with no thresholds checked and no run.json."""
    env = {**os.environ, **SHORT, "LOADTEST_P90_MS": "default=1000,invest_wrte=300"}
    code, out = await loadtest(cell, tmp_path, env, "--no-monitor", "-u", "1", "-r", "1", "-t", "3s")
    assert code == 2 and "LOADTEST_P90_MS" in out and "invest_wrte" in out, out[-4000:]
    assert not list(tmp_path.glob("*/locust_stats.csv")), "the run was made"


@pytest.mark.timeout(90)
async def test_on_several_processes_only_the_master_judges_the_run(cell, tmp_path):
    """`--processes 2` (the README's way to more load): the workers quit with no stats of their own (they sent them
    to the master); they must not log 'no request was made' nor write thresholds.json over the master's. And the
    run's books are made once, by the master: one ledger, so one hot omnibus and one hot settlement account for
    every process (books per worker would split the hot accounts' load between them)."""
    env = {**os.environ, **SHORT, "LOADTEST_WEIGHTS": "investing=1,card=1,statement=0,backdated=0"}
    # Locust's master port, 5557, held as by another engineer's run on this shared machine: ours takes a free one.
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            held.bind(("0.0.0.0", 5557))
            held.listen()
        except OSError:
            pass  # held by another run already
        code, out = await loadtest(cell, tmp_path, env, "--no-monitor", "--processes", "2", "-u", "2", "-r", "2",
                                   "-t", "3s")
    assert code == 0, out[-4000:]
    assert "no request was made" not in out, out[-4000:]
    [run_dir] = list(tmp_path.iterdir())
    result = json.loads((run_dir / "thresholds.json").read_text())
    assert result["broken"] == [] and sum(r["requests"] for r in result["rows"]) > 0, result
    ledgers = await ledger_names(cell)
    assert len(ledgers) == 1, ledgers


async def ledger_names(cell) -> list[str]:
    """The names of the tenant's ledgers: a run makes one set of books, whatever its processes."""
    host, tenant, key = cell
    async with httpx.AsyncClient(auth=(tenant, key)) as client:  # the cell runs on this event loop
        return [ledger["name"] for ledger in (await client.get(f"{host}/api/ledgers", params={"per_page": 100})).json()]


# A Locust worker as on a loaded machine: not scheduled from sending its client_ready until the master's replies (its
# ack, then, the run being under way, its spawn) have all come, so it reads them back to back. A double of Locust's
# transport only; the worker is Locust's own.
DESCHEDULED_WORKER = """
import sys
from locust.rpc import zmqrpc

real, held, read = zmqrpc.Client.recv, [], []

def recv(self):
    if not read:
        read.append(True)
        held.append(real(self))
        while held[-1].type != "spawn":
            held.append(real(self))
    return held.pop(0) if held else real(self)

zmqrpc.Client.recv = recv
sys.argv[0] = "locust"
from locust.main import main
main()
"""


@pytest.mark.timeout(150)
async def test_a_worker_that_joins_after_the_set_up_loads_the_runs_books(cell, tmp_path):
    """Locust's master with workers on other machines: a worker that connects after the books were made (and sent to
    the workers connected then) was sent none, so the users the master gives it stopped at once and the load it was
    added for never came. Worker A runs the first users; B joins once requests flow; A leaves, so every user is B's:
    requests go on, with no failure and no exception. And the run has one set of books: B, slow to read the master's
    replies as on a loaded machine, read its spawn before Locust had set its runner, took itself for the master and
    made a second ledger (its users loaded that one, splitting the hot accounts' load)."""
    host, tenant, key = cell
    env = {**os.environ, **SHORT, "LOADTEST_WEIGHTS": "investing=1,card=0,statement=0,backdated=0",
           "LEDGER_BASE_URL": host, "LEDGER_TENANT_ID": tenant, "LEDGER_API_KEY": key}
    port = str(free_port())
    loop = asyncio.get_running_loop()
    lines: list[str] = []

    async def spawn(*args: str) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*args, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT, start_new_session=True)

        async def read() -> None:
            async for line in proc.stdout:
                lines.append(f"[{proc.pid}] {line.decode(errors='replace')}")
        proc.reader = asyncio.create_task(read())
        return proc

    def history() -> list[tuple[int, int]]:  # the master's (time, requests so far), a row a second
        return [(int(r["Timestamp"]), int(r["Total Request Count"])) for path in
                tmp_path.glob("*/locust_stats_history.csv") for r in csv.DictReader(path.open())
                if r.get("Name") == "Aggregated" and (r.get("Total Request Count") or "").isdigit()]

    def requests_made(since: float = 0) -> int:
        return max((total for t, total in history() if t >= since), default=0)

    async def until(what: str, condition, within: float = 30) -> None:
        deadline = loop.time() + within
        while not condition():
            assert loop.time() < deadline, f"{what}: not within {within} s\n{''.join(lines)[-5000:]}"
            await asyncio.sleep(0.05)

    def said(text: str) -> int:
        return sum(text in line for line in lines)

    worker = (sys.executable, "-m", "locust", "-f", "loadtests/locustfile.py", "--worker", "--master-host",
              "127.0.0.1", "--master-port", port)
    procs = [await spawn(sys.executable, "-m", "loadtests.run", "--host", host, "--tenant", tenant, "--api-key",
                         key, "--reports", str(tmp_path), "--no-monitor", "--loglevel", "INFO", "--only-summary",
                         "--master", "--expect-workers", "1", "--master-bind-host", "127.0.0.1",
                         "--master-bind-port", port, "-u", "2", "-r", "2", "-t", "100s")]
    try:
        procs.append(await spawn(*worker))
        await until("requests from worker A", lambda: requests_made() > 0)
        procs.append(await spawn(sys.executable, "-c", DESCHEDULED_WORKER, *worker[3:]))
        await until("worker B connected", lambda: said("reported as ready. 2 workers connected") > 0)
        procs[1].terminate()  # A quits: the master gives its users to B
        await asyncio.wait_for(procs[1].wait(), 60)
        gone = time.time() + 2  # A's last stats (sent as it quits) counted by then
        await until("the master's count after A left", lambda: requests_made(since=gone) > 0)
        before = requests_made(since=gone)
        await until("requests by B's users", lambda: requests_made() > before + 20)
        procs[0].terminate()  # the run ends as on Ctrl-C: the files written, the thresholds judged
        code = await asyncio.wait_for(procs[0].wait(), 120)
        await asyncio.wait_for(procs[2].wait(), 60)
    finally:
        for proc in procs:
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)  # nothing left behind on the shared machine
                await proc.wait()
            await proc.reader
    out = "".join(lines)[-5000:]
    assert code == 0, out
    [run_dir] = list(tmp_path.iterdir())
    result = json.loads((run_dir / "thresholds.json").read_text())
    assert result["broken"] == [] and all(r["failures"] == 0 for r in result["rows"]), (result, out)
    ledgers = await ledger_names(cell)
    assert len(ledgers) == 1, (ledgers, out)


@pytest.mark.timeout(60)
async def test_a_user_class_that_ran_no_user_fails_the_run(cell, tmp_path):
    """-u 1 for two weighted user classes: Locust gives the one user to one class; the other's requests, and the p90
    threshold set on them, were never measured. The run asked for a mix it did not make: it fails, saying which."""
    env = {**os.environ, **SHORT, "LOADTEST_WEIGHTS": "investing=1,card=1,statement=0,backdated=0",
           "LOADTEST_P90_MS": "default=5000,card_authorize=1000,invest_write=1000"}
    code, out = await loadtest(cell, tmp_path, env, "--no-monitor", "-u", "1", "-r", "1", "-t", "2s")
    assert code == 1, out[-4000:]
    [run_dir] = list(tmp_path.iterdir())
    broken = json.loads((run_dir / "thresholds.json").read_text())["broken"]
    assert broken and all("no request" in b for b in broken), broken
    assert {b.split(":")[0] for b in broken} in ({"card_authorize"}, {"invest_write", "invest_read"}), broken


@pytest.mark.timeout(60)
async def test_the_throughput_is_over_the_time_requests_were_made_not_the_books_set_up(cell, tmp_path):
    """Locust's clock (its req/s, the report's and the regression table's) starts before test_start, where the
    books are made: a slow set-up (many accounts) read as a lower throughput. It counts from when they are ready.
    The run is long enough for a set-up slowed by a loaded machine to leave it requests to make."""
    run_s = 8
    env = {**os.environ, **SHORT, "LOADTEST_WEIGHTS": "investing=1,card=0,statement=0,backdated=0",
           "LOADTEST_INVESTORS": "250"}
    code, out = await loadtest(cell, tmp_path, env, "--no-monitor", "-u", "1", "-r", "1", "-t", f"{run_s}s")
    assert code == 0, out[-4000:]
    [run_dir] = list(tmp_path.iterdir())
    setup_s = json.loads((run_dir / "run.json").read_text())["books"]["setup_s"]
    assert setup_s >= 0.5, f"the set-up took {setup_s} s: too quick to tell"
    total = {r["name"]: r for r in report.read_stats(run_dir)}["Aggregated"]
    window_s = total["requests"] / total["rps"]  # the seconds Locust divided by
    assert window_s <= run_s - setup_s + 0.5, (window_s, setup_s)


def test_the_regression_table_says_when_the_two_runs_did_not_make_the_same_load(tmp_path):
    """Two runs of other users, shapes, mixes or books differ in latency and throughput for that reason: the
    regression section says what differs, above the table, rather than calling the difference a regression."""
    config = {"host": "http://x", "tenant_id": "acme", "weights": {"investing": 6, "card": 2}, "shape": None,
              "books": {"investors": 100, "cards": 50, "setup_s": 1.0},
              "locust": {"users": 16, "spawn_rate": 4, "run_time_s": 60, "processes": None}}
    runs = {}
    for name, run in (("same", config), ("same-again", {**config, "books": {**config["books"], "setup_s": 2.5}}),
                      ("other", {**config, "weights": {"investing": 1, "card": 0},
                                 "locust": {**config["locust"], "users": 64}})):
        runs[name] = tmp_path / name
        runs[name].mkdir()
        write_stats(runs[name], [["GET", "GET /a", 30, 0, 10, 5, 9, 12, 6, 20],
                                 ["", "Aggregated", 30, 0, 10, 5, 9, 12, 6, 20]])
        (runs[name] / "run.json").write_text(json.dumps(run))
    assert "Not the same load" not in report.generate(runs["same-again"], runs["same"]).read_text()
    md = report.generate(runs["other"], runs["same"]).read_text()
    assert "Not the same load" in md and "users 16 → 64" in md and "weights" in md, md


def test_the_spikes_spawn_rate_is_configurable():
    """The spike's rate (users a second up to the spike and back down), like the ramp's: `spike_rate`; 0, the
    default, brings the spike at once."""
    assert shape_stages("users=10,spike_users=30,ramp=10,steady=20,spike=5,steady2=15,spike_rate=4") == [
        (10, 10, 1.0), (30, 10, 1.0), (35, 30, 4), (50, 10, 4)]


def test_another_host_is_never_sent_make_runs_credentials(tmp_path):
    """`--host` of another deployment without --tenant/--api-key: the local stack's key (.ledger/dev.json) is for
    the local stack; it must not be sent to that host as Basic auth. Refused: no credentials for it."""
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps({"base_url": "http://127.0.0.1:8000", "tenant_id": "demo", "api_key": "lk_local"}))
    other = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOADTEST_")}
    proc = subprocess.run([sys.executable, "-m", "loadtests.run", "--dev-json", str(dev), "--host", other,
                           "--reports", str(tmp_path / "reports"), "--no-monitor", "-t", "1s"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no credentials" in proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert not (tmp_path / "reports").exists()


@pytest.mark.timeout(60)
async def test_a_host_given_with_a_final_slash_is_loaded_as_without_it(cell, tmp_path):
    """`--host http://host:8000/` (as copied from a browser): every request went to `//api/...`, which the HTTP
    client refuses, so every task raised and no request was made."""
    host, tenant, key = cell
    env = {**os.environ, **SHORT, "LOADTEST_WEIGHTS": "investing=1,card=0,statement=0,backdated=0"}
    code, out = await loadtest((host + "/", tenant, key), tmp_path, env, "--no-monitor", "-u", "1", "-r", "1",
                               "-t", "2s")
    assert code == 0, out[-4000:]
    [run_dir] = list(tmp_path.iterdir())
    assert json.loads((run_dir / "run.json").read_text())["host"] == host


@pytest.mark.timeout(240)
async def test_a_run_ended_by_sigterm_still_writes_every_report(cell, tmp_path):
    """SIGTERM (`timeout`, a cancelled CI job) ends the run as Ctrl-C does: Locust stops and writes its files,
    report.html too (which report.md links), then report.md is made."""
    host, tenant, key = cell
    env = {**os.environ, **SHORT, "LOADTEST_WEIGHTS": "investing=1,card=0,statement=0,backdated=0"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtests.run", "--host", host, "--tenant", tenant, "--api-key", key,
        "--reports", str(tmp_path), "--loglevel", "WARNING", "--only-summary", "--no-monitor", "-u", "1", "-r", "1",
        "-t", "200s", cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    deadline = asyncio.get_running_loop().time() + 60
    while not list(tmp_path.glob("*/locust_stats_history.csv")) or len(
            next(tmp_path.glob("*/locust_stats_history.csv")).read_text().splitlines()) < 3:
        assert asyncio.get_running_loop().time() < deadline and proc.returncode is None, "no run under way"
        await asyncio.sleep(0.05)
    proc.terminate()
    try:  # a bound on a loaded machine (Locust's files, then report.md's plots), not a speed assertion
        out = (await asyncio.wait_for(proc.communicate(), 150))[0].decode(errors="replace")
    except TimeoutError:
        proc.kill()
        out = (await proc.communicate())[0].decode(errors="replace")
        raise AssertionError(f"the run did not end within 150 s of SIGTERM:\n{out[-3000:]}") from None
    [run_dir] = list(tmp_path.iterdir())
    for name in ("report.html", "report.md", "thresholds.json"):
        assert (run_dir / name).is_file(), f"{name} missing: {sorted(p.name for p in run_dir.iterdir())}\n{out[-3000:]}"
    assert proc.returncode == 0, out[-3000:]


def test_remaking_a_report_from_a_directory_without_a_run_says_so(tmp_path):
    """`python -m loadtests.report DIR --previous OLD` with a mistyped directory: exit 2 naming it, no traceback."""
    write_stats(tmp_path, [["", "Aggregated", 30, 0, 10, 5, 9, 12, 6, 20]])
    for args in ([str(tmp_path / "nope")], [str(tmp_path), "--previous", str(tmp_path / "nope")]):
        proc = subprocess.run([sys.executable, "-m", "loadtests.report", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2 and "nope: no locust_stats.csv there" in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("given", ["investing=0,card=0,statement=0,backdated=0", "investing=x", "card=-1"])
def test_user_class_weights_that_leave_no_run_are_refused_naming_the_setting(given, monkeypatch):
    """Every weight 0 left Locust no user class (it failed after the run directory was made); a weight that is no
    whole number failed without saying which setting."""
    monkeypatch.setenv("LOADTEST_WEIGHTS", given)
    with pytest.raises(ValueError, match="LOADTEST_WEIGHTS"):
        weights()


@pytest.mark.parametrize(("setting", "given"), [
    ("LOADTEST_MAX_ERROR_RATE", "5"), ("LOADTEST_MAX_ERROR_RATE", "nan"), ("LOADTEST_MAX_ERROR_RATE", "-0.1"),
    ("LOADTEST_P90_MS", "nan"), ("LOADTEST_P90_MS", "default=1000,invest_write=-300")])
def test_thresholds_out_of_range_are_refused_naming_the_setting(setting, given, monkeypatch):
    """LOADTEST_MAX_ERROR_RATE=5 (meant as 5%: a fraction of 5 is never exceeded) or a NaN limit (no p90 and no
    error rate is ever above NaN) were accepted, and the run passed with that threshold never applied; a negative
    one failed every run whatever it measured."""
    monkeypatch.setenv(setting, given)
    with pytest.raises(ValueError, match=setting):
        thresholds()


def test_plain_locust_never_sends_make_runs_key_to_another_host(tmp_path):
    """`locust -f loadtests/locustfile.py --host OTHER` with the credentials left to .ledger/dev.json: that key is
    the local stack's; the set-up must fail without sending it to OTHER."""
    seen: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the stdlib's name
            seen.append(self.headers.get("Authorization") or "")
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dev = tmp_path / "dev.json"
        dev.write_text(json.dumps({"base_url": "http://127.0.0.1:8000", "tenant_id": "demo", "api_key": "lk_local"}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOADTEST_", "LEDGER_"))}
        proc = subprocess.run([sys.executable, "-m", "locust", "-f", "loadtests/locustfile.py", "--headless",
                               "--host", f"http://127.0.0.1:{server.server_port}", "-u", "1", "-r", "1", "-t", "2s",
                               "--only-summary"], cwd=ROOT, env={**env, "LEDGER_DEV_JSON": str(dev)},
                              capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
    assert not any(base64.b64encode(b"demo:lk_local").decode() in auth for auth in seen), seen
    assert proc.returncode == 1 and "no credentials" in proc.stderr, proc.stderr[-3000:]
