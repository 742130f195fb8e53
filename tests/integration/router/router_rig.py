"""Router test rig (helpers; fixtures are in conftest.py): real ASGI stand-in cells on real ports (uvicorn),
routers on their own server (router/server.py, what `python -m router` runs) inside the test loop, and
direct edits of the control-plane database."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid

import asyncpg
import msgspec
import uvicorn

from control_plane.devstack import free_port
from control_plane.operations import publish_route
from control_plane.settings import ControlPlaneSettings
from router.server import RouterServer
from router.settings import RouterSettings


def basic(tenant: str, key: str = "secret") -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{tenant}:{key}".encode()).decode()}


def new_tenant_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Served:
    """An ASGI app on 127.0.0.1:port, served by uvicorn in the running loop."""

    def __init__(self, app, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "Served":
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, lifespan="on", log_level="warning",
                                access_log=False, server_header=False, date_header=False)
        self.server = uvicorn.Server(config)
        # _serve, not serve: serve() would take over the test process's SIGINT and SIGTERM.
        self.task = asyncio.create_task(self.server._serve())
        for _ in range(200):
            if self.server.started:
                return self
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)
        raise TimeoutError(f"server on {self.port} did not start")

    async def stop(self) -> None:
        if self.server is not None:
            release = getattr(self.app, "release", None)
            if release is not None:  # slow answers still in flight end now: a server's stop waits for them
                release()
            self.server.should_exit = True
            await self.task


class ServedRouter:
    """A router on 127.0.0.1:port, on its own server in the running loop."""

    def __init__(self, settings: RouterSettings) -> None:
        self.server = RouterServer(settings)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.server.metrics_port}/metrics"

    async def start(self) -> "ServedRouter":
        await self.server.start()
        return self

    async def stop(self) -> None:
        await self.server.stop()


class EchoCell:
    """A stand-in cell: answers who it is and what it received; 421 for tenants it no longer owns; 503
    tenant_frozen (with Retry-After), before anything else, for a tenant frozen until a given loop time. A slow
    answer (?sleep=S) waits S seconds or until release(), when its server stops."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.moved_out: set[str] = set()
        self.frozen_until: dict[str, float] = {}
        self.seen: list[str] = []
        self.released = asyncio.Event()

    def release(self) -> None:
        self.released.set()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        tenant = None
        if "authorization" in headers:
            tenant = base64.b64decode(headers["authorization"][6:]).decode().split(":", 1)[0]
        self.seen.append(tenant)
        if "sleep=" in scope["query_string"].decode():
            # A slow answer, for requests in flight when the router stops.
            seconds = float(scope["query_string"].decode().split("sleep=", 1)[1].split("&")[0])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), seconds)
        extra = []
        if asyncio.get_running_loop().time() < self.frozen_until.get(tenant, 0.0):
            status, payload = 503, {"code": "tenant_frozen", "status": 503}
            extra = [(b"retry-after", b"1")]
        elif tenant in self.moved_out:
            status, payload = 421, {"code": "tenant_moved", "status": 421}
        else:
            status = 201 if scope["method"] == "POST" else 200
            payload = {"cell": self.name, "tenant": tenant, "method": scope["method"], "path": scope["path"],
                       "raw_path": scope["raw_path"].decode(), "query": scope["query_string"].decode(),
                       "body": body.decode(), "headers": headers}
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"x-cell", self.name.encode()), *extra]})
        await send({"type": "http.response.body", "body": msgspec.json.encode(payload)})


class Platform:
    """The control-plane database with two echo cells registered in it."""

    def __init__(self, database_url: str, redis_url: str, cells: dict[str, Served]) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.cells = cells
        self.settings = ControlPlaneSettings(database_url=database_url, redis_url=redis_url, actor="tests")

    def echo(self, cell: str) -> EchoCell:
        return self.cells[cell].app

    async def sql(self, query: str, *args):
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def add_tenant(self, tenant_id: str, cell: str, rate: int | None = None, burst: int | None = None) -> None:
        await self.sql("INSERT INTO tenants (id, cell, rate_limit_per_s, rate_burst) VALUES ($1, $2, $3, $4)",
                       tenant_id, cell, rate, burst)

    async def move(self, tenant_id: str, cell: str, publish: bool, redis_url: str | None = None) -> None:
        """A route change done directly in the control-plane database (what a move's flip step does), published
        on the session's Redis or on `redis_url`."""
        [row] = await self.sql("UPDATE tenants SET cell = $2, epoch = epoch + 1 WHERE id = $1 "
                               "RETURNING id, cell, epoch", tenant_id, cell)
        if publish:
            settings = self.settings
            if redis_url is not None:
                settings = ControlPlaneSettings(database_url=self.database_url, redis_url=redis_url, actor="tests")
            assert await publish_route(settings, dict(row))

    def router_settings(self, **overrides) -> RouterSettings:
        values = {"control_plane_database_url": self.database_url, "redis_url": self.redis_url,
                  "reload_interval_s": 60.0, "port": free_port(), "metrics_port": free_port()}
        values.update(overrides)
        return RouterSettings(**values)

    async def router(self, **overrides) -> ServedRouter:
        return await ServedRouter(self.router_settings(**overrides)).start()

    @contextlib.asynccontextmanager
    async def routed(self, cell: str = "cell-a", **overrides):
        """A new tenant on `cell` and a router (no pub/sub unless asked) that routes it: (tenant id, router).
        The tenant is deleted afterwards: a tenant left on a cell that is down would make later routers unready."""
        tenant = new_tenant_id()
        await self.add_tenant(tenant, cell)
        try:
            router = await self.router(**{"redis_url": "", **overrides})
            try:
                yield tenant, router
            finally:
                await router.stop()
        finally:
            await self.sql("DELETE FROM tenants WHERE id = $1", tenant)


async def eventually(check, timeout_s: float, interval_s: float = 0.05):
    """Poll `check()` until it returns a truthy value; the last value otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await check()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(interval_s)


class RealPlatform:
    """Real cells behind a real router; tenants and keys made by the control plane's operations."""

    def __init__(self, conn, settings: ControlPlaneSettings) -> None:
        self.conn = conn
        self.settings = settings
        self.router: ServedRouter | None = None

    async def start_router(self, **overrides) -> ServedRouter:
        values = {"control_plane_database_url": self.settings.database_url, "redis_url": self.settings.redis_url,
                  "reload_interval_s": 0.5, "port": free_port(), "metrics_port": free_port()}
        settings = RouterSettings(**{**values, **overrides})
        return await ServedRouter(settings).start()

    async def tenant(self, cell: str, prefix: str = "t") -> tuple[str, str]:
        """A new tenant on `cell`, with an API key: (tenant id, secret)."""
        from control_plane import operations

        tenant_id = new_tenant_id(prefix)
        await operations.create_tenant(self.conn, self.settings, tenant_id, "test", cell)
        _, secret = await operations.create_key(self.conn, self.settings, tenant_id)
        # The router learns of the tenant by pub/sub (or its reload): wait until it routes it.
        assert await eventually(lambda: self._routed(tenant_id, secret), 5)
        return tenant_id, secret

    async def _routed(self, tenant_id: str, secret: str) -> bool:
        import httpx

        async with httpx.AsyncClient(base_url=self.router.url) as client:
            return (await client.get("/api/ledgers", auth=(tenant_id, secret))).status_code == 200


async def read_answer(reader: asyncio.StreamReader, head_request: bool = False,
                      timeout_s: float = 5) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer read from a raw socket: (status, headers with lower-case names, body: content-length
    framed, none for HEAD, 204 and 304)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = 0 if head_request or status in (204, 304) else int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), timeout_s)
    return status, headers, body
