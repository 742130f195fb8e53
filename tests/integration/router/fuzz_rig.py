"""The OpenAPI fuzz (test_openapi_fuzz.py) run in the background of the session: a real cell and a real router
(`python -m cell`, `python -m router`, registered and given a tenant by the control plane's own operations) and
schemathesis against them, each a process of its own, started with the session's first test so that the fuzzer's
CPU-bound minutes overlap the other tests' waiting; the fuzz test, run last, only collects the verdict."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import traceback
import uuid
from pathlib import Path

import httpx
from make_run_rig import wait_until

from control_plane import operations
from control_plane.catalog import connect, migrate_catalog
from control_plane.devstack import free_port
from control_plane.settings import ControlPlaneSettings

MODULE = "test_openapi_fuzz.py"  # the test that collects the verdict
CELL = "cell-1"
FUZZ_EXAMPLES_MAX = 25
FUZZ_TIME_S_MAX = 300  # a bound on a run sharing the machine with the session; a quiet run takes ~160 s
START_S_MAX = 60
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance")


def _process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGER_", "CELL_", "ROUTER_"))}
    with open(log, "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, *args], env={**base, **env}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _ready(url: str, auth: tuple[str, str] | None = None, path: str = "/readyz") -> bool:
    try:
        return httpx.get(url + path, auth=auth, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class BackgroundFuzz:
    def __init__(self, make_database, redis_url: str, directory: Path) -> None:
        self.make_database, self.redis_url, self.directory = make_database, redis_url, directory
        self.procs: list[subprocess.Popen] = []
        self.fuzzer: subprocess.Popen | None = None
        self.report_path = directory / "schemathesis.txt"
        self.start_error: str | None = None

    def launch(self) -> BackgroundFuzz:
        """start(), a failure kept for the fuzz's test to report (not every test's set-up error)."""
        try:
            self.start()
        except Exception:  # noqa: BLE001
            self.start_error = traceback.format_exc()
        return self

    def start(self) -> BackgroundFuzz:
        suffix = uuid.uuid4().hex[:6]
        cp_url = self.make_database(f"cp_fuzz_{suffix}", migrate_cell=False)
        cell_db = self.make_database(f"cell_fuzz_{suffix}")
        cell_port, router_port = free_port(), free_port()
        cell_url, router_url = f"http://127.0.0.1:{cell_port}", f"http://127.0.0.1:{router_port}"
        # Sync posting mode (every balance exact at once), as the cell API's own tests run.
        self._spawn(["-m", "cell"], {"CELL_DATABASE_URL": cell_db, "CELL_PORT": str(cell_port), "CELL_NAME": CELL,
                                     "CELL_POSTING_MODE": "sync", "CELL_DB_POOL_MIN": "1", "CELL_DB_POOL_MAX": "4",
                                     "CELL_API_KEY_CACHE_TTL_S": "0.5"}, "cell.log")
        self._wait(lambda: _ready(cell_url), "the fuzz's cell is ready")
        settings = ControlPlaneSettings(database_url=cp_url, redis_url=self.redis_url, actor="tests")
        tenant, key = asyncio.run(self._register(settings, cell_url, cell_db))
        self._spawn(["-m", "router"], {
            "ROUTER_CONTROL_PLANE_DATABASE_URL": cp_url, "ROUTER_REDIS_URL": self.redis_url,
            "ROUTER_PORT": str(router_port), "ROUTER_METRICS_PORT": str(free_port()),
            "ROUTER_RELOAD_INTERVAL_S": "0.5"}, "router.log")
        self._wait(lambda: _ready(router_url, (tenant, key), "/api/ledgers"), "the fuzz's router routes its tenant")
        schema = self.directory / "openapi.json"
        schema.write_text(json.dumps(_seed(router_url, (tenant, key))))
        # One worker: CPython 3.11's ast constructor is not safe across threads (schemathesis's coverage phase
        # compiles in each worker; two at once once raised "SystemError: AST constructor recursion depth mismatch").
        with open(self.report_path, "wb") as out:
            self.fuzzer = subprocess.Popen(
                [sys.executable, "-m", "schemathesis.cli", "run", str(schema), "--url", router_url,
                 "--auth", f"{tenant}:{key}", "--checks", CHECKS, "--max-examples", str(FUZZ_EXAMPLES_MAX),
                 "--max-time", str(FUZZ_TIME_S_MAX), "--seed", "7", "--generation-deterministic",
                 "--request-timeout", "10", "--workers", "1", "--no-color", "--output-truncate", "false"],
                cwd=self.directory, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def verdict(self) -> tuple[int, str]:
        """The fuzzer's exit code and report, once it is done (within its own time bound and a margin)."""
        assert self.start_error is None, f"the fuzz did not start:\n{self.start_error}"
        try:
            code = self.fuzzer.wait(FUZZ_TIME_S_MAX + 60)
        except subprocess.TimeoutExpired:
            code = None
        return code, self.report_path.read_text(errors="replace")

    def stop(self) -> None:
        """Killed, not stopped: a graceful stop would wait out the router's drain, and no test looks at it."""
        for proc in ([self.fuzzer] if self.fuzzer else []) + self.procs[::-1]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def _spawn(self, args: list[str], env: dict[str, str], log: str) -> None:
        self.procs.append(_process(args, env, self.directory / log))

    def _wait(self, condition, what: str) -> None:
        def met() -> bool:
            exited = [p.args for p in self.procs if p.poll() is not None]
            assert not exited, f"{what}: exited {exited}; logs in {self.directory}"
            return condition()

        wait_until(met, what, START_S_MAX, 0.1)

    async def _register(self, settings: ControlPlaneSettings, cell_url: str, cell_db: str) -> tuple[str, str]:
        conn = await connect(settings.database_url)
        try:
            await migrate_catalog(conn)
            await operations.add_cell(conn, settings, CELL, cell_url, cell_db)
            tenant = f"fuzz-{uuid.uuid4().hex[:10]}"
            await operations.create_tenant(conn, settings, tenant, "test", CELL)
            _, secret = await operations.create_key(conn, settings, tenant)
            return tenant, secret
        finally:
            await conn.close()


def _seed(router_url: str, auth: tuple[str, str]) -> dict:
    """Something to find (a ledger with two accounts and a transaction between them); the OpenAPI document."""
    with httpx.Client(base_url=router_url, auth=auth, timeout=30) as client:
        r = client.get("/schema/openapi.json")
        assert r.status_code == 200, r.text
        ledger = client.post("/api/ledgers", json={"name": "fuzz"}).json()["id"]
        accounts = [client.post("/api/ledger_accounts", json={
            "name": n, "ledger_id": ledger, "normal_balance": n, "currency": "USD"}).json()["id"]
            for n in ("debit", "credit")]
        posted = client.post("/api/ledger_transactions", json={
            "ledger_id": ledger, "status": "posted", "ledger_entries": [
                {"ledger_account_id": accounts[0], "direction": "debit", "amount": 1},
                {"ledger_account_id": accounts[1], "direction": "credit", "amount": 1}]})
        assert posted.status_code == 201, posted.text
        return r.json()
