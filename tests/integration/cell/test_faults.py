"""Faults a client must get a truthful, prompt answer through: a stalled session holding a balance row (a
SIGSTOPped worker, as PostgreSQL sees it), the connection lost while a posting is in flight, a database that
cannot be reached, a database out of disk or taking no writes. Each is a 503 with Retry-After and a stable code,
never a hang and never a 500."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx
from litestar.testing import AsyncTestClient

from cell.api.app import create_app
from cell.service.tenants import create_api_key, create_tenant
from cell.settings import load_settings
from cell.store.db import session_bounds

LOCK_WAIT_S_MAX = 2.0  # CellSettings.lock_wait_ms_max's default, the cell these tests talk to
SLACK_S = 3.0  # a loaded 2-core machine: generous, a bound on waiting and not a speed assertion


async def _poll(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (value := await predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)
    return value


def _payment(ledger_id: str, debit: str, credit: str, amount: int) -> dict:
    return {"ledger_id": ledger_id, "status": "posted", "ledger_entries": [
        {"ledger_account_id": debit, "direction": "debit", "amount": amount},
        {"ledger_account_id": credit, "direction": "credit", "amount": amount}]}


async def _book(api) -> tuple[str, str, str]:
    ledger = await api.ledger()
    a, b = await api.account(ledger["id"], "debit"), await api.account(ledger["id"], "credit")
    return ledger["id"], a["id"], b["id"]


async def test_a_posting_behind_a_stalled_lock_holder_is_answered_then_succeeds_once_the_server_ends_it(
        api, cell_database_url):
    ledger, a, b = await _book(api)
    # A session that took a balance-row lock and went silent (a SIGSTOPped worker inside its apply), with the
    # idle-in-transaction bound the workers' and cells' sessions carry (here 4 s, above the 2 s lock wait).
    stalled = await asyncpg.connect(cell_database_url, server_settings=session_bounds(idle_in_transaction_ms_max=4000))
    try:
        await stalled.execute("BEGIN")
        await stalled.execute("SELECT 1 FROM account_balances WHERE account_id = $1 FOR UPDATE", uuid.UUID(a))
        started = time.monotonic()
        blocked = await api.post("/api/ledger_transactions", _payment(ledger, a, b, 100))
        assert blocked.status_code == 503, blocked.text
        assert blocked.json()["code"] == "lock_timeout" and blocked.headers["retry-after"]
        assert time.monotonic() - started < LOCK_WAIT_S_MAX + SLACK_S

        # The server ends the stalled session after its bound; its locks go with it.
        await _poll(lambda: _closed(stalled), 4 + SLACK_S + 5, "the stalled session ended by the server")
    finally:
        await stalled.close()
    posted = await api.post("/api/ledger_transactions", _payment(ledger, a, b, 100))
    assert posted.status_code == 201, posted.text
    assert (await api.balances(a))["posted_balance"]["debits"] == 100


async def _closed(conn: asyncpg.Connection) -> bool:
    return conn.is_closed()


async def test_a_connection_lost_while_the_posting_is_in_flight_is_503_outcome_unknown(api, admin_conn,
                                                                                       cell_database_url, live_cell_url):
    ledger, a, b = await _book(api)
    holder = await asyncpg.connect(cell_database_url)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    # A real cell process (the in-process test client runs a request to its end before anything else runs).
    live = httpx.AsyncClient(base_url=live_cell_url, auth=api.auth, timeout=30)
    try:
        await holder.execute("BEGIN")
        await holder.execute("SELECT 1 FROM account_balances WHERE account_id = $1 FOR UPDATE", uuid.UUID(a))
        posting = asyncio.create_task(live.post("/api/ledger_transactions", json=_payment(ledger, a, b, 70), headers=key))
        # The posting's backend waits on our lock: terminate it there (deterministic, unlike a crash mid-commit).
        pid = await _poll(lambda: admin_conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", holder.get_server_pid()),
            LOCK_WAIT_S_MAX, "the posting waiting on the lock")
        assert await admin_conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        lost = await posting
    finally:
        await holder.close()
        await live.aclose()
    assert lost.status_code == 503, lost.text
    assert lost.json()["code"] == "outcome_unknown" and lost.headers["retry-after"]
    assert "Idempotency-Key" in lost.json()["detail"]

    retried = await api.post("/api/ledger_transactions", _payment(ledger, a, b, 70), headers=key)
    assert retried.status_code == 201, retried.text
    again = await api.post("/api/ledger_transactions", _payment(ledger, a, b, 70), headers=key)
    assert again.status_code == 201 and again.json()["id"] == retried.json()["id"]
    assert (await api.balances(a))["posted_balance"]["debits"] == 70  # exactly once


async def test_a_database_out_of_disk_answers_503_writes_nothing_and_the_retry_posts_once(api, admin_conn):
    ledger, a, b = await _book(api)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    # What PostgreSQL raises when a table's file cannot grow (disk_full, 53100), where the posting's entries are
    # written, for this tenant's rows only.
    tenant = api.tenant_id.replace("'", "''")
    await admin_conn.execute("""CREATE FUNCTION test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        RAISE EXCEPTION 'could not extend file "base/16384/16385": No space left on device' USING ERRCODE = 'disk_full';
    END $$""")
    await admin_conn.execute(f"CREATE TRIGGER test_disk_full BEFORE INSERT ON ledger_entries FOR EACH ROW "
                             f"WHEN (NEW.tenant_id = '{tenant}') EXECUTE FUNCTION test_disk_full()")
    try:
        full = await api.post("/api/ledger_transactions", _payment(ledger, a, b, 40), headers=key)
        assert full.status_code == 503, full.text
        assert full.headers["content-type"].startswith("application/problem+json") and full.headers["retry-after"]
        assert full.json()["code"] == "database_out_of_resources", full.text
        assert "No space left" not in full.text  # the server's files are the operator's business, not the client's
        listed = await api.get("/api/ledger_transactions", params={"ledger_id": ledger})
        assert listed.status_code == 200 and listed.json() == []
    finally:
        await admin_conn.execute("DROP TRIGGER test_disk_full ON ledger_entries; DROP FUNCTION test_disk_full()")
    retried = await api.post("/api/ledger_transactions", _payment(ledger, a, b, 40), headers=key)
    assert retried.status_code == 201, retried.text
    assert (await api.balances(a))["posted_balance"]["debits"] == 40


async def _cell_of_its_own(make_database, prefix: str):
    """A fresh database with one tenant and its key, and a cell app on it (sync mode, no sweeper, a pool of at most
    2): (the database's name, the app, the tenant's credentials)."""
    name = f"{prefix}_{uuid.uuid4().hex[:6]}"
    url = make_database(name)
    setup = await asyncpg.connect(url)
    try:
        tenant = f"t-{uuid.uuid4().hex[:12]}"
        await create_tenant(setup, tenant, prefix)
        _, secret = await create_api_key(setup, tenant)
    finally:
        await setup.close()
    app = create_app(load_settings(("CELL_TEST_UNUSED_",), database_url=url, posting_mode="sync", sweep_interval_s=0,
                                   db_pool_min=1, db_pool_max=2, api_key_cache_ttl_s=0.5))
    return name, app, (tenant, secret)


async def test_a_cell_whose_database_is_unreachable_answers_503_quickly(make_database, admin_conn):
    name, app, auth = await _cell_of_its_own(make_database, "cell_down")
    try:
        async with AsyncTestClient(app) as client:
            ledger = (await client.post("/api/ledgers", json={"name": "main"}, auth=auth)).json()
            # The database goes away: no new connection is accepted and every session of it is ended.
            await admin_conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin_conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
            await _poll(lambda: _no_sessions(admin_conn, name), 10, "every session of the database ended")
            codes = []
            for _ in range(3):
                started = time.monotonic()
                r = await client.post("/api/ledger_transactions", auth=auth, json=_payment(
                    ledger["id"], str(uuid.uuid4()), str(uuid.uuid4()), 1))
                assert r.status_code == 503 and r.headers["retry-after"], r.text
                codes.append(r.json()["code"])
                assert time.monotonic() - started < SLACK_S
            # A pooled connection (at most db_pool_max = 2) whose end the client has not read yet may die under a
            # request on a loaded machine: that one's outcome is honestly unknown. Once the pool knows, nothing is
            # sent and the answer says so.
            assert set(codes) <= {"database_unavailable", "outcome_unknown"}, codes
            assert codes[-1] == "database_unavailable", codes
            assert (await client.get("/readyz")).status_code == 503
    finally:
        await admin_conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


async def test_a_database_that_takes_no_writes_answers_writes_503_and_still_serves_reads(make_database, admin_conn):
    """A primary demoted in a failover, or a standby the cell was pointed at: PostgreSQL itself refuses every write
    (default_transaction_read_only, as a standby's sessions are). Writes are 503 database_read_only, nothing written;
    reads are served; once it takes writes again, the same posting retried with its key is written once."""
    name, app, auth = await _cell_of_its_own(make_database, "cell_ro")
    key = {"Idempotency-Key": uuid.uuid4().hex}

    async def sessions_anew(setting: str) -> None:
        """The setting holds for sessions started after it: every older one is ended (the cell's background tasks
        open new ones at once, with it)."""
        await admin_conn.execute(f'ALTER DATABASE "{name}" {setting}')
        since = await admin_conn.fetchval("SELECT clock_timestamp()")
        older = "FROM pg_stat_activity WHERE datname = $1 AND backend_start <= $2"

        async def ended() -> bool:
            await admin_conn.execute(f"SELECT pg_terminate_backend(pid) {older}", name, since)
            return not await admin_conn.fetchval(f"SELECT count(*) {older}", name, since)

        await _poll(ended, 10, "every session of the database from before the setting ended")

    try:
        async with AsyncTestClient(app) as client:
            ledger = (await client.post("/api/ledgers", json={"name": "main"}, auth=auth)).json()
            a, b = [(await client.post("/api/ledger_accounts", auth=auth, json={
                "name": side, "ledger_id": ledger["id"], "normal_balance": side, "currency": "USD"})).json()["id"]
                for side in ("debit", "credit")]
            await sessions_anew("SET default_transaction_read_only = on")

            async def refused():
                r = await client.post("/api/ledger_transactions", auth=auth, json=_payment(ledger["id"], a, b, 25),
                                      headers=key)
                assert r.status_code == 503 and r.headers["retry-after"], r.text
                # (the pool may first find a session of it ended: outcome_unknown, then it knows)
                assert r.json()["code"] in ("database_read_only", "outcome_unknown", "database_unavailable"), r.text
                return r.json()["code"] == "database_read_only"

            await _poll(refused, 10, "a write refused as database_read_only")
            account = await client.get(f"/api/ledger_accounts/{a}", auth=auth)
            assert account.status_code == 200 and account.json()["balances"]["posted_balance"]["amount"] == 0
            listed = await client.get("/api/ledger_transactions", auth=auth, params={"ledger_id": ledger["id"]})
            assert listed.status_code == 200 and listed.json() == []

            await sessions_anew("RESET default_transaction_read_only")

            async def posted():
                r = await client.post("/api/ledger_transactions", auth=auth, json=_payment(ledger["id"], a, b, 25),
                                      headers=key)
                assert r.status_code in (201, 503), r.text
                return r.status_code == 201

            await _poll(posted, 10, "the posting written once the database takes writes")
            account = await client.get(f"/api/ledger_accounts/{a}", auth=auth)
            assert account.json()["balances"]["posted_balance"]["debits"] == 25  # once
    finally:
        await admin_conn.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')


async def _no_sessions(admin_conn, name: str) -> bool:
    return not await admin_conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name)
