"""The router: Basic-auth username -> tenant -> cell, rate limit, forward, answer unchanged (served by server.py)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from http import HTTPStatus
from pathlib import Path

import msgspec
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ledger_common.basic_auth import UNAUTHORIZED_BODY, WWW_AUTHENTICATE, parse_basic
from ledger_common.problems import PROBLEM_JSON, problem_body
from ledger_common.sql import load_queries
from router.routes import KnownCredentials, RateLimiter, Route, RoutingTable, build_table
from router.settings import RouterSettings
from router.upstream import ConnectFailed, ResponseFailed, UpstreamError, UpstreamPool, UpstreamTimeout

log = logging.getLogger("router")

# Hop-by-hop headers (RFC 9110 7.6.1) are the connection's, not the message's; the router sets its own
# host and content-length.
# expect: the router has the whole body before it forwards, so a cell never needs to say 100 Continue.
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
                         b"trailer", b"upgrade", b"proxy-authorization", b"proxy-authenticate", b"host",
                         b"content-length", b"expect"})
_RESPONSE_DROP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
                            b"trailer", b"upgrade"})
# The cell's problem code for a write refused because the tenant is frozen for a move.
_FROZEN_CODE = b'"tenant_frozen"'
_LOCAL_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_PROBLEM = [(b"content-type", PROBLEM_JSON.encode())]
_JSON = [(b"content-type", b"application/json")]


Q = load_queries(Path(__file__).parent / "sql")


UNAUTHORIZED_HEADERS = [(b"content-type", PROBLEM_JSON.encode()), (b"www-authenticate", WWW_AUTHENTICATE)]


def tenant_from_authorization(value: bytes | None) -> str | None:
    """The Basic-auth username, or None. The key is checked by the cell."""
    credentials = parse_basic(value)
    return credentials[0] if credentials is not None else None


OTHER_TENANTS = "_other"
STOP_TASKS_S_MAX = 5.0  # how long stop() insists on the background loops ending


class Metrics:
    def __init__(self, tenants_labelled_max: int = 1000) -> None:
        # One time series per tenant is fine for hundreds, not for a hundred thousand: past the bound, the
        # tenants seen later are counted together under OTHER_TENANTS (the cells' logs name them).
        self.tenants_labelled_max = tenants_labelled_max
        self.registry = CollectorRegistry()
        self.requests = Counter("router_requests", "Requests forwarded, by cell and status",
                                ["cell", "status"], registry=self.registry)
        self.latency = Histogram("router_request_duration_seconds", "Time from request to answer, by cell and status",
                                 ["cell", "status"], registry=self.registry,
                                 buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.tenant_requests = Counter("router_tenant_requests", "Requests by tenant", ["tenant"],
                                       registry=self.registry)
        self.rejected = Counter("router_rejected", "Requests answered by the router itself, by reason",
                                ["reason"], registry=self.registry)
        self.routes = Gauge("router_routes", "Tenants in the routing table", registry=self.registry)
        self.reloads = Counter("router_route_reloads", "Routing table reloads, by trigger", ["trigger"],
                               registry=self.registry)
        # labels() costs a lock and a dict lookup: keep the children.
        self._children: dict[tuple[str, int], tuple] = {}
        self._tenants: dict[str, object] = {}

    def observe(self, cell: str, status: int, tenant: str, seconds: float) -> None:
        children = self._children.get((cell, status))
        if children is None:
            children = self._children[(cell, status)] = (
                self.requests.labels(cell, str(status)), self.latency.labels(cell, str(status)))
        children[0].inc()
        children[1].observe(seconds)
        counter = self._tenants.get(tenant)
        if counter is None:
            if len(self._tenants) >= self.tenants_labelled_max:
                tenant = OTHER_TENANTS
                counter = self._tenants.get(tenant)
            if counter is None:
                counter = self._tenants[tenant] = self.tenant_requests.labels(tenant)
        counter.inc()


class Router:
    def __init__(self, settings: RouterSettings) -> None:
        self.settings = settings
        self.table = RoutingTable({})
        self.loaded = False
        self.pools: dict[str, UpstreamPool] = {}
        self.limiter = RateLimiter(settings.tenants_tracked_max)
        self.auth_failures = RateLimiter(settings.auth_failure_addresses_max)
        self.credentials = KnownCredentials(settings.credentials_known_max, settings.credentials_known_ttl_s)
        self.metrics = Metrics(settings.metrics_tenants_max)
        self._db = None
        self._tasks: list[asyncio.Task] = []
        self._reload_lock = asyncio.Lock()
        self._reload_requested = 0
        self._reload_done = 0
        self.redis_connected = False
        self._stopping = False
        # cell -> (last check succeeded, monotonic time of the last success)
        self.cell_health: dict[str, tuple[bool, float]] = {}

    async def dispatch(self, method: bytes, path: str, target: bytes, request_headers, body: bytes | None,
                       client_host: str | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One request, as router/server.py read it.

        `path` decides what the router answers itself; `target` (path and query, as sent) is forwarded;
        `body` is None when it was over `body_bytes_max`. Returns the answer: status, headers (with a
        content-length) and body.
        """
        if path in _LOCAL_PATHS:
            return self._local(path)
        started = time.perf_counter()
        authorization = None
        for name, value in request_headers:
            if name == b"authorization":
                authorization = value
                break
        tenant_id = tenant_from_authorization(authorization)
        route = self.table.get(tenant_id) if tenant_id is not None else None
        now = time.monotonic()
        address = client_host or ""
        if route is None:
            if wait_s := self._auth_failures_wait_s(address, now):
                return self._too_many_failures(wait_s)
            self._auth_failed(address, now)
            self.metrics.rejected.labels("unauthorized").inc()
            return _own(401, UNAUTHORIZED_HEADERS, UNAUTHORIZED_BODY)
        # Only credentials the cell has accepted spend the tenant's budget: anybody can name a tenant. Others
        # pass while their client address has failed attempts left (a 401 spends one), and become known when
        # the cell accepts them.
        digest = hashlib.sha256(authorization).digest()
        known = self.credentials.tenant(digest, now) == tenant_id
        if known:
            if wait_s := self.limiter.wait_s(tenant_id, route.rate_per_s, route.burst, now):
                self.metrics.rejected.labels("rate_limited").inc()
                retry_after = str(max(1, int(wait_s + 0.999))).encode()
                return _own(429, _PROBLEM + [(b"retry-after", retry_after)],
                            problem_body(429, "rate_limited", "This tenant's request rate limit is exceeded.",
                                         title="Too Many Requests"))
        elif wait_s := self._auth_failures_wait_s(address, now):
            return self._too_many_failures(wait_s)
        if body is None:
            self.metrics.rejected.labels("body_too_large").inc()
            return _own(413, _PROBLEM, problem_body(413, "body_too_large",
                                                    f"The body exceeds {self.settings.body_bytes_max} bytes.",
                                                    title="Content Too Large"))
        headers = [(n, v) for n, v in request_headers if n not in _HOP_BY_HOP]
        if client_host:
            headers.append((b"x-forwarded-for", client_host.encode()))

        status, response_headers, response_body = await self._forward(route, method, target, headers, body)
        retried_421 = False
        hold_until = None
        delay_s = 0.01
        while True:
            if status == 421 and not retried_421:
                # The cell no longer owns this tenant: our map is stale. Refresh it and try once more.
                retried_421 = True
                try:
                    await self.reload("misdirected")
                except Exception as exc:  # noqa: BLE001 - the control plane is down: answer the cell's 421 as is
                    log.warning("reload after a 421 failed: %r", exc)
                newer = self.table.get(tenant_id)
                if newer is None:
                    break
                route = newer
            elif status == 503 and _FROZEN_CODE in response_body:
                # The tenant is frozen for a move (the cell refused before writing anything): hold the request
                # and retry, on the newest route, for a bounded time; past it the cell's 503 (Retry-After) goes out.
                now = time.monotonic()
                if hold_until is None:
                    hold_until = now + self.settings.frozen_hold_s
                if now >= hold_until:
                    break
                await asyncio.sleep(min(delay_s, hold_until - now))
                delay_s = min(delay_s * 2, 0.1)
                route = self.table.get(tenant_id) or route
            else:
                break
            status, response_headers, response_body = await self._forward(route, method, target, headers, body)
        if status == 401:
            self.credentials.forget(digest)
            self._auth_failed(address, time.monotonic())
        elif not known and status < 500 and status != 421:
            # An answer of the cell's own, past its key check (not a 5xx: the router's 503 when the cell is
            # down; nor a 421, which checked nothing): the credentials are good. The tenant pays for this one.
            now = time.monotonic()
            self.credentials.remember(digest, tenant_id, now)
            self.limiter.charge(tenant_id, route.rate_per_s, route.burst, now)
        self.metrics.observe(route.cell, status, tenant_id, time.perf_counter() - started)
        return status, response_headers, response_body

    def _auth_failures_wait_s(self, address: str, now: float) -> float:
        """0 while the address has failed attempts left (none is spent); else the seconds until one is back."""
        s = self.settings
        return self.auth_failures.wait_s(address, s.auth_failures_per_s_max, s.auth_failure_burst_max, now,
                                         take=False)

    def _auth_failed(self, address: str, now: float) -> None:
        s = self.settings
        self.auth_failures.charge(address, s.auth_failures_per_s_max, s.auth_failure_burst_max, now)

    def _too_many_failures(self, wait_s: float):
        self.metrics.rejected.labels("auth_failures").inc()
        retry_after = str(max(1, int(wait_s + 0.999))).encode()
        return _own(429, _PROBLEM + [(b"retry-after", retry_after)],
                    problem_body(429, "auth_failures_rate_limited",
                                 "Too many requests with credentials that were not accepted from this address.",
                                 title="Too Many Requests"))

    def _pool(self, api_url: str) -> UpstreamPool:
        pool = self.pools.get(api_url)
        if pool is None:
            s = self.settings
            pool = self.pools[api_url] = UpstreamPool(
                api_url, connections_max=s.connections_per_cell_max, connect_timeout_s=s.connect_timeout_s,
                timeout_s=s.upstream_timeout_s, idle_s_max=s.idle_connection_s_max,
                body_bytes_max=s.response_bytes_max)
        return pool

    async def _forward(self, route: Route, method: bytes, target: bytes, headers, body: bytes):
        try:
            response = await self._pool(route.api_url).request(method, target, headers, body)
        except ConnectFailed:
            return self._unavailable(503, "cell_unavailable", "Service Unavailable",
                                     "The tenant's cell cannot be reached; retry later.")
        except UpstreamTimeout:
            return self._unavailable(504, "cell_timeout", "Gateway Timeout", "The tenant's cell did not answer in time.")
        except ResponseFailed:
            return self._unavailable(502, "cell_failed", "Bad Gateway",
                                     "The tenant's cell failed to answer; the request may or may not have been "
                                     "applied (retry with the same Idempotency-Key).")
        headers_out = [(n, v) for n, v in response.headers if n not in _RESPONSE_DROP]
        if method != b"HEAD" and not any(n == b"content-length" for n, _ in headers_out):
            headers_out.append((b"content-length", str(len(response.body)).encode()))
        return response.status, headers_out, response.body

    def _unavailable(self, status: int, code: str, title: str, detail: str):
        body = problem_body(status, code, detail, title=title)
        return status, _PROBLEM + [(b"retry-after", str(self.settings.retry_after_s).encode()),
                                   (b"content-length", str(len(body)).encode())], body

    def _local(self, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if path == "/healthz":
            return _own(200, _JSON, b'{"status":"ok"}')
        if path == "/readyz":
            return self._readiness()
        # /metrics names every tenant: it is served on the metrics listener only (metrics_answer).
        return problem_answer(404, "not_found", "No such resource.")

    def metrics_answer(self, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The metrics listener's only resource."""
        if path != "/metrics":
            return problem_answer(404, "not_found", "No such resource.")
        self.metrics.routes.set(len(self.table.routes))
        return _own(200, [(b"content-type", CONTENT_TYPE_LATEST.encode())], generate_latest(self.metrics.registry))

    def _readiness(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if not self.loaded:
            return _own(503, _PROBLEM, problem_body(503, "not_ready", "The routing table is not loaded yet.",
                                                    title="Service Unavailable", pubsub=self.redis_connected))
        now = time.monotonic()
        ttl_s = self.settings.cell_health_ttl_s
        cells = {}
        for cell in self.table.cells:
            health = self.cell_health.get(cell)
            cells[cell] = health is not None and health[0] and now - health[1] <= ttl_s
        unhealthy = sorted(cell for cell, ok in cells.items() if not ok)
        if unhealthy:
            body = problem_body(503, "not_ready", "Cells without a recent successful health check: "
                                + ", ".join(unhealthy) + ".", title="Service Unavailable", unhealthy_cells=unhealthy,
                                pubsub=self.redis_connected)
            return _own(503, _PROBLEM, body)
        body = msgspec.json.encode({"ready": True, "routes": len(self.table.routes), "cells": cells,
                                    "pubsub": self.redis_connected})
        return _own(200, _JSON, body)

    # ---- the cells' health --------------------------------------------------------------------------------

    async def check_cells(self) -> None:
        """One round of health checks of every cell that has tenants, all at once; bounded in time."""
        cells = dict(self.table.cells)
        results = await asyncio.gather(*(self._check_cell(url) for url in cells.values()))
        now = time.monotonic()
        for cell, ok in zip(cells, results):
            previous = self.cell_health.get(cell)
            if previous is not None and previous[0] != ok:
                log.warning("cell %s is %s", cell, "healthy again" if ok else "unhealthy")
            # A failure keeps the time of the last success: readiness looks at how recent that was.
            self.cell_health[cell] = (True, now) if ok else (False, previous[1] if previous else 0.0)
        for cell in set(self.cell_health) - set(cells):
            del self.cell_health[cell]

    async def _check_cell(self, api_url: str) -> bool:
        try:
            response = await asyncio.wait_for(
                self._pool(api_url).request(b"GET", self.settings.cell_health_path.encode(), [], b""),
                self.settings.cell_health_timeout_s)
        except (UpstreamError, TimeoutError, OSError):
            return False
        return response.status == 200

    async def _health_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.cell_health_interval_s)
            try:
                await self.check_cells()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bug here must not stop the checks: readiness goes stale, says 503
                log.exception("cell health checks failed")

    # ---- the routing table ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.settings.control_plane_database_url:
            raise RuntimeError("ROUTER_CONTROL_PLANE_DATABASE_URL is not set")
        self._stopping = False
        try:
            await self.reload("start")
        except Exception as exc:  # noqa: BLE001 - not fatal: /readyz says 503 and the reload loop retries
            log.warning("routing table not loaded at start: %r", exc)
        await self.check_cells()  # so that a router whose cells are up is ready as soon as it listens
        self._tasks.append(asyncio.create_task(self._reload_loop()))
        self._tasks.append(asyncio.create_task(self._health_loop()))
        if self.settings.redis_url:
            self._tasks.append(asyncio.create_task(self._subscribe_loop()))

    async def stop(self) -> None:
        # A cancel is not always honoured: a library may swallow it (redis-py's pub/sub read could, and then
        # waited for the next message for ever). So the loops also watch `_stopping` and wake up every
        # second, and the cancel is repeated, within a bound, until they are gone.
        self._stopping = True
        pending = set(self._tasks)
        deadline = asyncio.get_running_loop().time() + STOP_TASKS_S_MAX
        while pending and asyncio.get_running_loop().time() < deadline:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        if pending:
            log.warning("router background tasks still running after %.0f s: %r", STOP_TASKS_S_MAX, pending)
        self._tasks.clear()
        for pool in self.pools.values():
            pool.close()
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def reload(self, trigger: str) -> None:
        """Load the whole map; concurrent callers share one load that started after they asked."""
        self._reload_requested += 1
        ticket = self._reload_requested
        async with self._reload_lock:
            if self._reload_done >= ticket:
                return
            covers = self._reload_requested
            rows = await self._fetch_routes()
            fresh = build_table(rows, self.settings.rate_limit_per_s_default, self.settings.rate_burst_default)
            self.table = self.table.merged_with(fresh)
            self.loaded = True
            self._reload_done = covers
            self.metrics.reloads.labels(trigger).inc()

    async def _fetch_routes(self):
        import asyncpg

        if self._db is None:
            self._db = await asyncpg.create_pool(self.settings.control_plane_database_url, min_size=1, max_size=2,
                                                 timeout=self.settings.connect_timeout_s,
                                                 server_settings={"application_name": "ledger-router"})
        return await self._db.fetch(Q["load_routes"], timeout=10)

    async def _reload_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.reload_interval_s)
            try:
                await self.reload("periodic")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep serving the cached map; try again next period
                log.warning("routing table reload failed: %r", exc)

    async def _subscribe_loop(self) -> None:
        import redis.asyncio as redis

        backoff_s = 0.2
        while not self._stopping:
            client = redis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=2,
                                          health_check_interval=10)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.settings.routes_channel)
                self.redis_connected = True
                backoff_s = 0.2
                # Messages published while we were not listening are lost: catch up with a full load.
                await self.reload("resubscribe")
                while not self._stopping:
                    # A bounded wait, not listen(): the loop sees `_stopping` within a second even if a
                    # cancel was lost inside the read.
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        await self.reload("pubsub")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down: the cached map and the periodic reload carry on
                log.info("route pub/sub interrupted: %r", exc)
            finally:
                self.redis_connected = False
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except Exception:  # noqa: BLE001
                    pass
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, 5.0)


def _own(status: int, headers, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """An answer of the router's own."""
    return status, headers + [(b"content-length", str(len(body)).encode())], body


def problem_answer(status: int, code: str, detail: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """An answer of the router's own, as problem+json titled with the status' reason phrase."""
    return _own(status, _PROBLEM, problem_body(status, code, detail, title=HTTPStatus(status).phrase))
