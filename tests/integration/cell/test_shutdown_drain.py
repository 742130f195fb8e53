"""`python -m cell` at SIGTERM (a pod being stopped): out of rotation at once (/readyz 503, no new connection), the
requests in flight finished up to CELL_SHUTDOWN_DRAIN_S, one still running then cancelled (its transaction rolled
back, logged), the pools closed, exit 0. The slow request is a posting waiting on a balance row the test holds."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import subprocess
import time
import uuid

import asyncpg
import httpx
import msgspec
import pytest
import uvicorn

from tests.integration.conftest import start_cell_process

WAIT_S = 20  # a bound on what the test waits for (a loaded machine), never a wait for its own sake
# The posting waits on the test's lock for longer than the drain bound below: the cell's own lock bound is not what
# ends it.
SLOW_CELL = {"posting_mode": "sync", "lock_wait_ms_max": "120000"}


async def _until(condition, what: str, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while not (result := await condition()):
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.05)
    return result


@contextlib.asynccontextmanager
async def _slow_posting(api, database_url: str):
    """A posting sent to the cell and waiting on a balance row the test locks: (the posting's task, a function that
    releases the lock and lets the posting go on)."""
    ledger = await api.ledger()
    debit, credit = await api.account(ledger["id"], "debit"), await api.account(ledger["id"], "credit")
    holder = await asyncpg.connect(database_url)
    lock = holder.transaction()
    await lock.start()
    held = [True]
    posting = None

    async def release() -> None:
        if held:
            held.clear()
            await lock.rollback()

    try:
        await holder.execute("SELECT 1 FROM account_balances WHERE account_id = $1 FOR UPDATE", credit["id"])
        posting = asyncio.create_task(api.transfer(ledger["id"], debit["id"], credit["id"], 700))
        pid = holder.get_server_pid()
        await _until(lambda: holder.fetchval("SELECT count(*) > 0 FROM pg_stat_activity "
                                             "WHERE $1 = ANY(pg_blocking_pids(pid))", pid),
                     "the posting waits on the test's lock")
        yield posting, release
    finally:
        await release()
        await holder.close()
        if posting is not None and not posting.done():
            posting.cancel()
            await asyncio.gather(posting, return_exceptions=True)


async def _out_of_rotation(url: str) -> bool:
    """A new connection is refused, or /readyz on it is 503: what a readiness probe or a Service sees."""
    try:
        async with httpx.AsyncClient(timeout=5) as fresh:
            return (await fresh.get(url + "/readyz")).status_code == 503
    except httpx.TransportError:
        return True


async def _exit_code(proc: subprocess.Popen, timeout_s: float) -> int:
    try:
        return await asyncio.to_thread(proc.wait, timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the cell did not exit within {timeout_s} s of SIGTERM")


@pytest.fixture
def stopped_after():
    """The cell processes a test starts, killed at its end if still running (a failed test's)."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_sigterm_lets_a_posting_in_flight_finish_with_its_answer_then_exits_0(
        cell_database_url, new_tenant, admin_conn, stopped_after, processes):
    drain_s = 30.0
    proc, url = start_cell_process(cell_database_url, name=f"drain-{processes}", processes=processes,
                                   shutdown_drain_s=str(drain_s), **SLOW_CELL)
    stopped_after.append(proc)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT_S + drain_s) as client:
        api = await new_tenant(client)
        async with _slow_posting(api, cell_database_url) as (posting, release):
            proc.send_signal(signal.SIGTERM)
            await _until(lambda: _out_of_rotation(url), "the cell is out of rotation after SIGTERM")
            assert proc.poll() is None and not posting.done()  # still draining: the posting is in flight
            await release()
            answer = await posting
            stopped = time.monotonic()
            assert answer.status_code == 201, answer.text
            assert answer.json()["status"] == "posted"
    assert await _exit_code(proc, WAIT_S) == 0
    assert time.monotonic() - stopped < WAIT_S
    assert await admin_conn.fetchval("SELECT count(*) FROM ledger_transactions WHERE id = $1",
                                     answer.json()["id"]) == 1


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_a_request_still_running_past_the_drain_bound_is_cancelled_rolled_back_and_logged(
        cell_database_url, new_tenant, admin_conn, stopped_after, tmp_path, processes):
    drain_s = 1.0
    log_path = tmp_path / "cell.log"
    with open(log_path, "wb") as log:
        proc, url = start_cell_process(cell_database_url, stderr=log, name=f"drain-cut-{processes}",
                                       processes=processes, shutdown_drain_s=str(drain_s), **SLOW_CELL)
    stopped_after.append(proc)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as client:
        api = await new_tenant(client)
        async with _slow_posting(api, cell_database_url) as (posting, _release):
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            # Exits within its bound (and the time to close its pools), the test's lock still held.
            assert await _exit_code(proc, drain_s + WAIT_S) == 0
            assert time.monotonic() - signalled < drain_s + 10
            answer = await posting  # not carried out, and said so (a client may retry it)
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["code"] == "shutting_down"
    # Nothing half-done: the posting's transaction rolled back (the invariants are verified by new_tenant).
    assert await admin_conn.fetchval("SELECT count(*) FROM ledger_transactions WHERE tenant_id = $1",
                                     api.tenant_id) == 0
    # The operator's log says it in one line: a cancellation at shutdown is expected, not an error with a traceback.
    logged = log_path.read_text(errors="replace")
    assert "cancelled" in logged
    assert "Traceback" not in logged and "Exception in ASGI application" not in logged, logged


async def test_readiness_is_503_from_the_signal_on(cell_database_url):
    # The listener closes at the server's next tick (0.1 s): a probe that comes in between, or on a connection already
    # open, is told too.
    from litestar.testing import AsyncTestClient

    from cell.api.app import create_app
    from cell.api.serve import CellServer
    from cell.settings import load_settings

    settings = load_settings(("CELL_TEST_UNUSED_",), database_url=cell_database_url, db_pool_min=1, db_pool_max=2,
                             sweep_interval_s=0, events_sequence_interval_s=0)
    app = create_app(settings, run_migrations=False)
    server = CellServer(uvicorn.Config(app))
    server.config.load()
    async with AsyncTestClient(app) as cell:
        assert (await cell.get("/readyz")).status_code == 200
        server.handle_exit(signal.SIGTERM, None)
        answer = await cell.get("/readyz")
        assert answer.status_code == 503 and answer.json()["code"] == "not_ready", answer.text
        assert server.should_exit


def _posting_body(ledger_id: str, debit: str, credit: str) -> bytes:
    return (f'{{"ledger_id": "{ledger_id}", "status": "posted", "ledger_entries": ['
            f'{{"ledger_account_id": "{debit}", "direction": "debit", "amount": 5}}, '
            f'{{"ledger_account_id": "{credit}", "direction": "credit", "amount": 5}}]}}').encode()


def _posting_request(api, body: bytes, key: str) -> bytes:
    token = base64.b64encode(f"{api.tenant_id}:{api.api_key}".encode()).decode()
    return (f"POST /api/ledger_transactions HTTP/1.1\r\nHost: cell\r\nAuthorization: Basic {token}\r\n"
            f"Idempotency-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


async def _answer_status_and_code(reader: asyncio.StreamReader) -> tuple[int, str | None]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), WAIT_S)
    code = msgspec.json.decode(body).get("code") if headers["content-type"] == "application/problem+json" else None
    return int(lines[0].split(" ")[1]), code


async def _blocked(conn: asyncpg.Connection, count: int) -> bool:
    return await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0"
                               " AND datname = current_database()") >= count


async def test_a_posting_its_group_commits_after_the_drain_answered_503_is_what_its_retry_gets(
        cell_database_url, new_tenant, admin_conn, stopped_after):
    """Postings sent together go in one statement (cell.service.posting_groups), which runs to its end even when their
    requests are cancelled: at the drain's bound they are answered 503 shutting_down, then the statement may still
    commit (the pools' close waits for it). Retried with the same Idempotency-Key, each gets the posting that was
    written (once), or is written now. The group is formed for sure: two postings wait on one lock (a tenant's
    statements in flight at most), the group's postings gather meanwhile, and go as one when the first lock goes."""
    postings_n = 6
    proc, url = start_cell_process(cell_database_url, name="drain-group", shutdown_drain_s="1", **SLOW_CELL)
    stopped_after.append(proc)
    host, port = url.removeprefix("http://").split(":")
    async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as client:
        api = await new_tenant(client)
        ledger = await api.ledger()
        accounts = [await api.account(ledger["id"], side) for side in ("debit", "credit", "debit", "credit")]
        first_debit, first_credit, debit, credit = (account["id"] for account in accounts)
        keys = [f"drain-group-{uuid.uuid4()}" for _ in range(postings_n)]
        body = _posting_body(ledger["id"], debit, credit)
        holders = [await asyncpg.connect(cell_database_url) for _ in range(2)]
        locks = [holder.transaction() for holder in holders]
        try:
            for holder, lock, account in zip(holders, locks, (first_credit, credit)):
                await lock.start()
                await holder.execute("SELECT 1 FROM account_balances WHERE account_id = $1 FOR UPDATE", account)
            first = []
            for _ in range(2):  # alone, each its statement in flight
                first.append(asyncio.create_task(api.transfer(ledger["id"], first_debit, first_credit, 5)))
                await _until(lambda n=len(first): _blocked(admin_conn, n), "the first postings wait")
            connections = [await asyncio.open_connection(host, int(port)) for _ in keys]
            for (_, writer), key in zip(connections, keys):
                writer.write(_posting_request(api, body, key))
            await locks[0].rollback()  # the first two go on: the group gathered meanwhile is sent
            assert [answer.status_code for answer in await asyncio.gather(*first)] == [201, 201]
            await _until(lambda: _blocked(admin_conn, 1), "the group waits on the test's second lock")
            proc.send_signal(signal.SIGTERM)
            answers = await asyncio.gather(*(_answer_status_and_code(reader) for reader, _ in connections))
            assert answers == [(503, "shutting_down")] * postings_n, answers
            await locks[1].rollback()  # the statement sent goes on, and commits
        finally:
            for holder in holders:
                await holder.close()
        assert await _exit_code(proc, WAIT_S) == 0
        for _, writer in connections:
            writer.close()
    written = {str(row["id"]) for row in await admin_conn.fetch(
        "SELECT t.id FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id "
        "WHERE t.tenant_id = $1 AND e.ledger_account_id = $2", api.tenant_id, credit)}
    assert written, "the group's statement committed nothing after its 503s"

    retry_proc, retry_url = start_cell_process(cell_database_url, name="drain-group-retry", **SLOW_CELL)
    stopped_after.append(retry_proc)
    async with httpx.AsyncClient(base_url=retry_url, timeout=WAIT_S) as client:
        retried = []
        for key in keys:
            answer = await client.post("/api/ledger_transactions", auth=api.auth, content=body,
                                       headers={"Idempotency-Key": key, "Content-Type": "application/json"})
            assert answer.status_code == 201, answer.text
            retried.append(answer.json()["id"])
    # The postings committed after their 503 are their retries' answers, not written twice: one posting per key.
    assert written <= set(retried) and len(set(retried)) == postings_n, (written, retried)
    assert await admin_conn.fetchval("SELECT count(*) FROM ledger_transactions WHERE tenant_id = $1",
                                     api.tenant_id) == postings_n + 2
