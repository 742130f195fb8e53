"""`make run`: the whole platform on one machine, in the foreground. Embedded PostgreSQL, Valkey and SQS
(unless LEDGER_DATABASE_URL / LEDGER_REDIS_URL / LEDGER_SQS_ENDPOINT_URL name real ones), the control-plane
database, two cells with their workers, the router on :8000, and a demo tenant. Ctrl-C stops it all."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from pathlib import Path

import asyncpg

from control_plane import catalog, operations
from control_plane.devstack import (
    EmbeddedPostgres,
    EmbeddedSQS,
    EmbeddedValkey,
    wait_for_port,
)
from control_plane.errors import LedgerctlError
from control_plane.settings import ControlPlaneSettings
from ledger_common.sqs import make_sqs_client

ROOT = Path(__file__).resolve().parents[1]
# Defaults a new user sees; the environment may move them (a test runs a second stack beside a developer's).
DATA = Path(os.environ.get("LEDGER_DATA_DIR", ROOT / ".ledger")).resolve()
HOST = "127.0.0.1"
ROUTER_PORT = int(os.environ.get("LEDGER_ROUTER_PORT", "8000"))
CELL_PORT_BASE = int(os.environ.get("LEDGER_CELL_PORT_BASE", "8100"))  # cell N listens on base + N
CELLS = (("cell-1", CELL_PORT_BASE + 1), ("cell-2", CELL_PORT_BASE + 2))
CELL_METRICS_PORT_BASE = int(os.environ.get("LEDGER_CELL_METRICS_PORT_BASE", "9100"))  # cell N's /metrics: base + N
WORKER_METRICS_PORT_BASE = int(os.environ.get("LEDGER_WORKER_METRICS_PORT_BASE", "9200"))  # worker N: base + N
ROUTER_METRICS_PORT = WORKER_METRICS_PORT_BASE  # base + 0: the router's metrics, never on its public port
CONTROL_PLANE_DATABASE = "ledger_control_plane"
DEMO_TENANT = "demo"
# The demo tenant is for trying the API and for load tests of this machine's stack (`make loadtest`): its own rate
# limit, far above the router's default for tenants (1,000 requests/s), so that a load test measures the ledger,
# not the limiter. Set when the tenant has no limit of its own; `ledgerctl tenants rate-limit demo` changes it.
DEMO_RATE_LIMIT_PER_S = 100_000
start_timeout_s_max = 90.0
stop_timeout_s_max = 15.0


def say(message: str) -> None:
    print(f"[run] {message}", flush=True)


def _die_with_parent() -> None:
    # Linux: a child gets SIGTERM when this process dies, even by SIGKILL: no orphans holding our ports.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


RESTART_DELAY_S_MIN = 0.5  # a process that dies is started again after this long...
RESTART_DELAY_S_MAX = 10.0  # ...twice as long after each death in a row, up to this...
STABLE_S = 30.0  # ...and after RESTART_DELAY_S_MIN again once it had stayed up this long.
WATCH_INTERVAL_S = 0.2


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Unit(ABC):
    """One thing `make run` keeps alive: started again, with back-off, whenever it dies."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started_at = 0.0
        self.delay_s = RESTART_DELAY_S_MIN
        self.restart_at: float | None = None  # set while it is down, waiting for its restart

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def exit_status(self) -> str | None:
        """None while it runs, else how it ended ("exited with -9")."""

    def clean_up(self) -> None:
        """Remove what is left of it after a death (its other processes), so a restart finds its port free."""

    @abstractmethod
    def stop(self) -> None: ...


class Child(Unit):
    """A Python process of ours (`python -m module`), in its own process group: the group is what gets cleaned
    up, so a grandchild (the worker's beat, uvicorn's workers) never outlives it."""

    def __init__(self, name: str, log_name: str, module: str, env: dict[str, str], cwd: Path) -> None:
        super().__init__(name)
        self.module, self.env, self.cwd = module, env, cwd
        self.log_path = DATA / "logs" / f"{log_name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", self.module], env={**os.environ, **self.env},
                                         cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent)  # noqa: PLW1509 - only the main thread spawns
        self.started_at = time.monotonic()

    def exit_status(self) -> str | None:
        code = self.proc.poll()
        return None if code is None else f"exited with {code}"

    def clean_up(self) -> None:
        _killpg(self.proc.pid, signal.SIGKILL)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the process stops its own children (the worker its beat)

    def wait_stopped(self, deadline: float) -> None:
        try:
            self.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{self.name} did not stop in time: killing it")
        self.clean_up()  # the process if it is still there, and whatever it left in its group
        self.proc.wait()

    def stop(self) -> None:
        self.terminate()
        self.wait_stopped(time.monotonic() + stop_timeout_s_max)


class Server(Unit):
    """An embedded server (devstack): restarted on the same port and data directory, so clients reconnect."""

    def __init__(self, name: str, server, after_restart=None) -> None:
        super().__init__(name)
        self.server = server
        self.after_restart = after_restart
        self.starts = 0

    def start(self) -> None:
        self.server.start()
        self.starts += 1
        self.started_at = time.monotonic()
        if self.starts > 1 and self.after_restart is not None:
            self.after_restart()

    def exit_status(self) -> str | None:
        return self.server.exit_status()

    def clean_up(self) -> None:
        self.server.stop()

    def stop(self) -> None:
        self.server.stop()


class Supervisor:
    """The servers and child processes, started in order, restarted when they die, stopped in reverse order."""

    def __init__(self) -> None:
        self.servers: list[Server] = []
        self.children: list[Child] = []
        (DATA / "logs").mkdir(parents=True, exist_ok=True)

    def add_server(self, name: str, server, after_restart=None) -> Server:
        unit = Server(name, server, after_restart)
        unit.start()
        self.servers.append(unit)
        return unit

    def spawn(self, name: str, log_name: str, module: str, env: dict[str, str], cwd: Path = ROOT) -> Child:
        child = Child(name, log_name, module, env, cwd)
        child.start()
        self.children.append(child)
        return child

    def watch(self) -> None:
        """Notice deaths, restart what is due. A death stays with its unit: nothing else is stopped."""
        for unit in [*self.servers, *self.children]:
            if unit.restart_at is None:
                status = unit.exit_status()
                if status is not None:
                    unit.clean_up()
                    self._restart_later(unit, status)
            elif time.monotonic() >= unit.restart_at:
                try:
                    unit.start()
                except Exception as error:  # noqa: BLE001 - any failure to start is retried with back-off
                    unit.clean_up()
                    self._restart_later(unit, f"did not start ({error})")
                else:
                    unit.restart_at = None
                    say(f"{unit.name} restarted")

    def _restart_later(self, unit: Unit, why: str) -> None:
        now = time.monotonic()
        if now - unit.started_at >= STABLE_S:
            unit.delay_s = RESTART_DELAY_S_MIN
        delay_s, unit.delay_s = unit.delay_s, min(unit.delay_s * 2, RESTART_DELAY_S_MAX)
        unit.restart_at = now + delay_s
        say(f"{unit.name} {why}; restarting in {delay_s:g}s")

    def stop(self) -> None:
        for child in reversed(self.children):
            child.terminate()
        deadline = time.monotonic() + stop_timeout_s_max
        for child in reversed(self.children):
            child.wait_stopped(deadline)
        for server in reversed(self.servers):
            server.stop()


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_http(url: str, child: Child, what: str, auth: tuple[str, str] | None = None) -> None:
    """Until GET url answers 200; fail fast when the process dies (while starting, a death is a configuration
    error that restarting would only repeat)."""
    proc, log_path = child.proc, child.log_path
    request = urllib.request.Request(url)
    if auth is not None:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    deadline = time.monotonic() + start_timeout_s_max
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode}; its log ({log_path}):\n{tail(log_path)}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} is not ready after {start_timeout_s_max:.0f}s; its log ({log_path}):\n"
                             f"{tail(log_path)}")
        time.sleep(0.2)


def port_free(port: int) -> bool:
    try:
        wait_for_port(HOST, port, 0.05)
        return False
    except TimeoutError:
        return True


async def ensure_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(server_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server_url.rsplit("/", 1)[0] + "/" + name


def ensure_queue(endpoint_url: str, name: str) -> str:
    return make_sqs_client(endpoint_url, "us-east-1", 5.0).create_queue(QueueName=name)["QueueUrl"]


async def prepare_catalog(settings: ControlPlaneSettings, cells: list[dict]) -> None:
    conn = await catalog.connect(settings.database_url)
    try:
        await catalog.migrate_catalog(conn)
        for cell in cells:
            await operations.ensure_cell(conn, settings, cell["name"], cell["api_url"], cell["database_url"],
                                         cell["queue_url"])
    finally:
        await conn.close()


async def ensure_demo_tenant(settings: ControlPlaneSettings) -> tuple[str, str]:
    """The demo tenant and its key. The secret is kept in .ledger/ (the cell stores only its hash), so a
    second run prints the same credentials; a key that no longer works (data wiped, revoked) is replaced."""
    from cell.service.tenants import authenticate

    secret_path = DATA / "demo-credentials.json"
    conn = await catalog.connect(settings.database_url)
    try:
        tenant = await conn.fetchrow(catalog.Q["fetch_tenant"], DEMO_TENANT)
        if tenant is None or tenant["state"] == "creating":  # a run stopped half-way through creating it: finish
            await operations.create_tenant(conn, settings, DEMO_TENANT, "Demo tenant")
            say(f"created tenant {DEMO_TENANT!r} through the control plane")
        if tenant is None or tenant["rate_limit_per_s"] is None:
            await operations.set_rate_limit(conn, settings, DEMO_TENANT, DEMO_RATE_LIMIT_PER_S, None)
        saved = json.loads(secret_path.read_text()) if secret_path.exists() else {}
        secret = saved.get("api_key") if saved.get("tenant_id") == DEMO_TENANT else None
        if secret:
            tenant = await catalog.fetch_tenant(conn, DEMO_TENANT)
            cell = await catalog.fetch_cell(conn, tenant["cell"])
            async with operations.cell_connection(cell) as cell_conn:
                if not await authenticate(cell_conn, DEMO_TENANT, secret):
                    secret = None
        if not secret:
            _, secret = await operations.create_key(conn, settings, DEMO_TENANT)
            secret_path.write_text(json.dumps({"tenant_id": DEMO_TENANT, "api_key": secret}))
            secret_path.chmod(0o600)
            say(f"created an API key for {DEMO_TENANT!r}")
        return DEMO_TENANT, secret
    finally:
        await conn.close()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def ledgerctl_command() -> str:
    """ledgerctl as a shell in the checkout runs it: the script beside this Python (make run: .venv/bin/ledgerctl),
    never a bare `ledgerctl`, which is on no PATH until the virtualenv is activated."""
    script = Path(sys.executable).parent / "ledgerctl"
    if not script.exists():
        return f"{sys.executable} -m control_plane.cli"
    return os.path.relpath(script) if script.absolute().is_relative_to(Path.cwd()) else str(script)


def refuse_busy_ports() -> None:
    """Before anything is touched: a `make run` already running here keeps its servers and its dev.json."""
    metrics_ports = [base + i for i in range(1, len(CELLS) + 1)
                     for base in (CELL_METRICS_PORT_BASE, WORKER_METRICS_PORT_BASE)]
    for port in [ROUTER_PORT, ROUTER_METRICS_PORT, *(p for _, p in CELLS), *metrics_ports]:
        if not port_free(port):
            raise SystemExit(f"port {port} is in use: is another `make run` still running?")


def main() -> None:
    # SIGTERM ends us like Ctrl-C does, through the same clean-up.
    signal.signal(signal.SIGTERM, _interrupt)
    refuse_busy_ports()
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "dev.json").unlink(missing_ok=True)  # written again only once this run is ready
    procs = Supervisor()
    try:
        run(procs)
    except KeyboardInterrupt:
        print(flush=True)
        say("stopping")
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave processes behind (it is bounded anyway).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop()
        (DATA / "dev.json").unlink(missing_ok=True)
        say("stopped")


def run(procs: Supervisor) -> None:
    server_url = os.environ.get("LEDGER_DATABASE_URL")
    if not server_url:
        say(f"starting PostgreSQL (data in {DATA / 'pg'})")
        pg = EmbeddedPostgres(DATA / "pg")
        procs.add_server("postgres", pg)
        server_url = pg.url
    redis_url = os.environ.get("LEDGER_REDIS_URL")
    if not redis_url:
        valkey = EmbeddedValkey(DATA / "valkey", die_with_parent=True)
        procs.add_server("valkey", valkey)
        redis_url = valkey.url
    sqs_url = os.environ.get("LEDGER_SQS_ENDPOINT_URL")
    if not sqs_url:
        say("starting the SQS endpoint")
        sqs = EmbeddedSQS(die_with_parent=True)
        # In memory: a restarted endpoint has no queues until they are created again (same names, same URLs).
        procs.add_server("sqs endpoint", sqs, after_restart=lambda: [ensure_queue(sqs.url, f"ledger-{name}")
                                                                       for name, _ in CELLS])
        sqs_url = sqs.url

    settings = ControlPlaneSettings(database_url=asyncio.run(ensure_database(server_url, CONTROL_PLANE_DATABASE)),
                                    redis_url=redis_url, actor="make-run")
    cells = []
    for index, (name, port) in enumerate(CELLS, start=1):
        database_url = asyncio.run(ensure_database(server_url, f"ledger_{name.replace('-', '_')}"))
        queue_url = ensure_queue(sqs_url, f"ledger-{name}")
        cells.append({"name": name, "port": port, "api_url": f"http://{HOST}:{port}", "database_url": database_url,
                      "queue_url": queue_url, "broker_url": redis_url.rsplit("/", 1)[0] + f"/{index}",
                      "metrics_port": WORKER_METRICS_PORT_BASE + index,
                      "cell_metrics_port": CELL_METRICS_PORT_BASE + index})
    apis = []
    for cell in cells:
        apis.append(procs.spawn(f"{cell['name']} api", cell["name"], "cell", {
            "CELL_NAME": cell["name"], "CELL_HOST": HOST, "CELL_PORT": str(cell["port"]),
            "CELL_DATABASE_URL": cell["database_url"], "CELL_SQS_ENDPOINT_URL": sqs_url,
            "CELL_SQS_QUEUE_URL": cell["queue_url"], "CELL_POSTING_MODE": "hybrid",
            "CELL_METRICS_PORT": str(cell["cell_metrics_port"]),
            # A development stack: webhook endpoints may be a local receiver (http://127.0.0.1:...).
            "CELL_WEBHOOK_ALLOW_HTTP_LOOPBACK": "true"}))
    for api, cell in zip(apis, cells):
        wait_http(cell["api_url"] + "/readyz", api, f"cell {cell['name']}")
        say(f"cell {cell['name']} ready on {cell['api_url']} (metrics on http://{HOST}:{cell['cell_metrics_port']}/metrics)")
    asyncio.run(prepare_catalog(settings, cells))
    for cell in cells:
        # Each worker in its own directory: Celery beat keeps its schedule file in the working directory.
        procs.spawn(f"{cell['name']} worker", f"worker-{cell['name']}", "worker", {
            "WORKER_CELL_NAME": cell["name"], "WORKER_DATABASE_URL": cell["database_url"],
            "WORKER_BROKER_URL": cell["broker_url"], "WORKER_SQS_ENDPOINT_URL": sqs_url,
            "WORKER_SQS_QUEUE_URL": cell["queue_url"], "WORKER_METRICS_PORT": str(cell["metrics_port"]),
            "WORKER_AUDIT_ANCHOR_DATABASE_URL": settings.database_url,
            "WORKER_WEBHOOK_ALLOW_HTTP_LOOPBACK": "true"},
            cwd=DATA / f"worker-{cell['name']}")
    say("workers started (metrics on " + ", ".join(f"http://{HOST}:{c['metrics_port']}/metrics" for c in cells)
        + "; logs in .ledger/logs/)")

    router = procs.spawn("router", "router", "router", {
        "ROUTER_HOST": HOST, "ROUTER_PORT": str(ROUTER_PORT), "ROUTER_METRICS_PORT": str(ROUTER_METRICS_PORT),
        "ROUTER_CONTROL_PLANE_DATABASE_URL": settings.database_url, "ROUTER_REDIS_URL": redis_url})
    try:
        tenant_id, api_key = asyncio.run(ensure_demo_tenant(settings))
    except LedgerctlError as error:
        raise SystemExit(f"could not set up the demo tenant: {error.message}") from error
    base_url = f"http://{HOST}:{ROUTER_PORT}"
    wait_http(base_url + "/readyz", router, "the router")
    # Ready means a real request goes through the router to the tenant's cell and back.
    wait_http(base_url + "/api/ledgers", router, "the router", auth=(tenant_id, api_key))

    (DATA / "dev.json").write_text(json.dumps({
        "base_url": base_url, "tenant_id": tenant_id, "api_key": api_key,
        # For ledgerctl and tools: where the control plane and the shared servers are.
        "control_plane_database_url": settings.database_url, "redis_url": redis_url, "sqs_endpoint_url": sqs_url,
    }, indent=2) + "\n")
    ledgerctl = ledgerctl_command()
    print(f"""
Ledger is running: router {base_url} -> cells {', '.join(c['api_url'] for c in cells)}

  base URL   {base_url}
  tenant id  {tenant_id}
  API key    {api_key}

  curl -u {tenant_id}:{api_key} {base_url}/api/ledgers
  curl -u {tenant_id}:{api_key} -H 'content-type: application/json' -d '{{"name": "main"}}' {base_url}/api/ledgers

  ledgerctl:  export CONTROL_PLANE_DATABASE_URL={settings.database_url} CONTROL_PLANE_REDIS_URL={redis_url} CONTROL_PLANE_WEBHOOK_ALLOW_HTTP_LOOPBACK=true
              {ledgerctl} cells list; {ledgerctl} tenants list; {ledgerctl} keys create {tenant_id}

Credentials are in .ledger/dev.json; logs in .ledger/logs/. A process that dies is restarted (with
back-off); Ctrl-C stops everything.
""", flush=True)
    while True:
        time.sleep(WATCH_INTERVAL_S)
        procs.watch()


if __name__ == "__main__":
    main()
