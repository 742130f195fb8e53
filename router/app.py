"""The router: Basic-auth username -> tenant -> cell, rate limit, forward, answer unchanged (served by server.py)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from bisect import bisect_left
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote

import msgspec
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from ledger_common.basic_auth import KEY_CHECKED_PREFIX, UNAUTHORIZED_BODY, WWW_AUTHENTICATE, parse_basic
from ledger_common.problems import PROBLEM_JSON, problem_body
from ledger_common.server_urls import url_refusals_redacted
from ledger_common.sql import load_queries
from router.routes import KnownCredentials, RateLimiter, Route, RoutingTable, build_table
from router.settings import RouterSettings
from router.upstream import ConnectFailed, Response, UpstreamError, UpstreamPool, UpstreamTimeout

log = logging.getLogger("router")

# The cell's problem code for a write refused because the tenant is frozen for a move.
_FROZEN_CODE = b'"tenant_frozen"'
_LOCAL_PATHS = frozenset({"/healthz", "/readyz", "/startupz", "/metrics"})
_PROBLEM = [(b"content-type", PROBLEM_JSON.encode())]
_JSON = [(b"content-type", b"application/json")]


Q = load_queries(Path(__file__).parent / "sql")


UNAUTHORIZED_HEADERS = [(b"content-type", PROBLEM_JSON.encode()), (b"www-authenticate", WWW_AUTHENTICATE)]


def _credentials(authorization: bytes | None) -> tuple[bytes | None, str | None, bytes | None]:
    """(the Authorization value, the tenant it names, a SHA-256 digest of the tenant and key): a connection's memo
    of its credentials (`Connection.auth`). The digest is of the credentials as the cell reads them, not of the
    value's spelling (`Basic`, `basic`, more spaces: one key, one entry, one budget). Without a tenant, no digest.
    The key is checked by the cell."""
    credentials = parse_basic(authorization)
    if credentials is None:
        return authorization, None, None
    tenant_id, key = credentials  # a tenant id has no ':' (control_plane): "tenant:key" names one pair
    return authorization, tenant_id, hashlib.sha256(f"{tenant_id}:{key}".encode()).digest()


# What a tenant's cell serves its clients: the API (past its check of the key) and the OpenAPI document. The cell's
# other paths (its probes: its name, backlog, migrations) are not relayed, whatever key comes with them.
_RELAYED = (KEY_CHECKED_PREFIX.encode(), b"/schema")


def _relayed_target(target: bytes) -> bool:
    """Whether `target` is for a path a cell serves its clients, as the cell decodes it (a target spelt plainly is
    told by its first bytes: the common case costs one comparison)."""
    if target.startswith(_RELAYED):
        return True
    return unquote(target.split(b"?", 1)[0].decode("latin-1")).startswith((KEY_CHECKED_PREFIX, "/schema"))


def _key_checked(target: bytes) -> bool:
    """Whether a cell answers a request for `target` only past its check of the key: its path, as the cell decodes
    it, under KEY_CHECKED_PREFIX."""
    return unquote(target.split(b"?", 1)[0].decode("latin-1")).startswith(KEY_CHECKED_PREFIX)


# The cell's answers that may come before its check of the key, whatever the path: its HTTP server's bounds on a
# request's head and body (the router adds a header line or two to a head it let through).
_NOT_KEY_CHECKED = frozenset({413, 431})


OTHER_TENANTS = "_other"
STOP_TASKS_S_MAX = 5.0  # how long stop() insists on the background loops ending


_LATENCY_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self, tenants_labelled_max: int = 1000) -> None:
        # One time series per tenant is fine for hundreds, not for a hundred thousand: past the bound, the
        # tenants seen later are counted together under OTHER_TENANTS (the cells' logs name them).
        self.tenants_labelled_max = tenants_labelled_max
        self.registry = CollectorRegistry()
        self.rejected = Counter("router_rejected", "Requests answered by the router itself, by reason",
                                ["reason"], registry=self.registry)
        self.routes = Gauge("router_routes", "Tenants in the routing table", registry=self.registry)
        self.reloads = Counter("router_route_reloads", "Routing table reloads, by trigger", ["trigger"],
                               registry=self.registry)
        # The series every forwarded request updates are plain numbers, made into samples when scraped
        # (collect): a prometheus_client child costs a lock and several calls per update.
        # (cell, status) -> [sum of seconds, count per latency bucket..., count over the last bound]
        self._answers: dict[tuple[str, int], list] = {}
        self._tenants: dict[str, int] = {}
        self.registry.register(self)

    def observe(self, cell: str, status: int, tenant: str, seconds: float) -> None:
        series = self._answers.get((cell, status))
        if series is None:
            series = self._answers[(cell, status)] = [0.0] + [0] * (len(_LATENCY_BUCKETS) + 1)
        series[0] += seconds
        series[1 + bisect_left(_LATENCY_BUCKETS, seconds)] += 1  # le: the first bound >= seconds
        tenants = self._tenants
        if tenant in tenants:
            tenants[tenant] += 1
        elif len(tenants) < self.tenants_labelled_max:
            tenants[tenant] = 1
        else:
            tenants[OTHER_TENANTS] = tenants.get(OTHER_TENANTS, 0) + 1

    def collect(self):
        """The per-request series, for the registry (a custom collector)."""
        requests = CounterMetricFamily("router_requests", "Requests forwarded, by cell and status",
                                       labels=["cell", "status"])
        latency = HistogramMetricFamily("router_request_duration_seconds",
                                        "Time from request to answer, by cell and status", labels=["cell", "status"])
        for (cell, status), series in list(self._answers.items()):
            labels = [cell, str(status)]
            buckets, seen = [], 0
            for bound, count in zip(_LATENCY_BUCKETS, series[1:]):
                seen += count
                buckets.append((floatToGoString(bound), seen))
            total = seen + series[-1]
            buckets.append(("+Inf", total))
            requests.add_metric(labels, total)
            latency.add_metric(labels, buckets, series[0])
        tenants = CounterMetricFamily("router_tenant_requests", "Requests by tenant", labels=["tenant"])
        for tenant, count in list(self._tenants.items()):
            tenants.add_metric([tenant], count)
        return [requests, latency, tenants]


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

    def handle(self, client, method: bytes, target: bytes, headers, authorization: bytes | None,
               body: bytes | None):
        """One request, as router/server.py read it; its answer (status, headers with a content-length: (name,
        value) pairs, or header lines as bytes; body) goes to `client.answer`, at once or later. Returns the task
        that will answer, if one is needed (the client's connection cancels it when the client goes); a request
        to a cell with a kept-alive connection at hand needs none: the cell's answer is relayed from the
        connection's callback.

        `target` (path and query, as sent) is forwarded with `headers` (the end-to-end ones, names in lower case,
        then x-forwarded-for naming the client: the server kept the hop-by-hop ones apart; not to be changed, a
        connection's requests may share one list); `authorization` is the first Authorization value; `body` is
        None when it was over `body_bytes_max`. `client` also has `client_host`, `auth` (this connection's last
        credentials, parsed: a client sends the same ones on every request of a connection) and `encoded` (its
        last forwarded headers, encoded: likewise). A target the router may answer itself goes to `handle_local`
        instead.
        """
        admitted = self._admit(client, method, target, headers, authorization, body)
        if type(admitted) is tuple:
            client.answer(*admitted)
            return None
        api_url = admitted.route.api_url
        pool = self.pools.get(api_url) or self._pool(api_url)
        if pool.try_send(method, target, admitted.headers, body, admitted.relayed, client.encoded):
            return None
        return asyncio.get_running_loop().create_task(self._forward_slowly(admitted))

    def handle_local(self, client, path: str) -> bool:
        """Answer a request for one of the router's own paths, and say so; False for any other path (router/
        server.py asks only for targets that start like one, then hands the others to `handle`)."""
        if path not in _LOCAL_PATHS:
            return False
        client.answer(*self._local(path))
        return True

    def _admit(self, client, method: bytes, target: bytes, headers, authorization: bytes | None,
               body: bytes | None):
        """The router's own checks, in order: credentials naming a known tenant (else 401), the client
        address's failed attempts, the tenant's rate limit (429), the body bound (413). An answer of the router's
        own, or the request to forward."""
        # One clock for the latency metric, the buckets and the credentials' TTL (time.monotonic is
        # time.perf_counter's clock on Linux).
        if not _relayed_target(target):
            self.metrics.rejected.labels("not_found").inc()
            return _NOT_RELAYED
        now = time.monotonic()
        memo = client.auth
        if memo is None or memo[0] != authorization:
            memo = client.auth = _credentials(authorization)
        tenant_id = memo[1]
        route = self.table.routes.get(tenant_id) if tenant_id is not None else None
        if route is None:
            address = client.client_host or ""
            if wait_s := self._auth_failures_wait_s(address, now):
                return self._too_many_failures(wait_s)
            self._auth_failed(address, now)
            self.metrics.rejected.labels("unauthorized").inc()
            return _own(401, UNAUTHORIZED_HEADERS, UNAUTHORIZED_BODY)
        digest = memo[2]
        # Only credentials the cell has accepted spend the tenant's budget: anybody can name a tenant. Others spend
        # nothing but wait, as known ones would, while the tenant is past its limit (new keys would pass it
        # otherwise); they pass while their client address has failed attempts left (a 401 spends one), and become
        # known, the tenant paying for that request, when the cell accepts them.
        known = self.credentials.tenant(digest, now) == tenant_id
        if wait_s := self.limiter.wait_s(tenant_id, route.rate_per_s, route.burst, now, known):
            self.metrics.rejected.labels("rate_limited").inc()
            retry_after = str(max(1, int(wait_s + 0.999))).encode()
            return _own(429, _PROBLEM + [(b"retry-after", retry_after)],
                        problem_body(429, "rate_limited", "This tenant's request rate limit is exceeded.",
                                     title="Too Many Requests"))
        if not known and (wait_s := self._auth_failures_wait_s(client.client_host or "", now)):
            return self._too_many_failures(wait_s)
        if body is None:
            self.metrics.rejected.labels("body_too_large").inc()
            return _own(413, _PROBLEM, problem_body(413, "body_too_large",
                                                    f"The body exceeds {self.settings.body_bytes_max} bytes.",
                                                    title="Content Too Large"))
        return _Forward(self, client, route, tenant_id, digest, known, method, target, headers, body, now)

    async def _forward_slowly(self, forward: "_Forward") -> None:
        """A request the fast path could not take (no kept-alive connection at hand, or an answer that asks
        for a retry), in a task; it answers the client in the end, with a 500 on a bug of ours."""
        try:
            answer = await self._forward(forward.route, forward.method, forward.target, forward.headers,
                                         forward.body)
            self._finish(forward, *await self._retry(forward, answer))
        except Exception:  # noqa: BLE001 - a bug of ours must not hang the client: 500, and log it
            log.exception("request failed in the router")
            forward.client.answer(*problem_answer(500, "internal_error", "The router failed to handle the request."))

    async def _retry(self, forward: "_Forward", answer):
        """The cell's answer, or that of a retry when the first asked for one: a 421 (the map is stale), or a
        503 tenant_frozen (a move is freezing the tenant)."""
        status, response_headers, response_body = answer
        misdirected_epoch = -1  # the epoch of the route a cell last answered 421 on
        hold_until = None
        delay_s = 0.01
        while True:
            if status == 421 and forward.route.epoch > misdirected_epoch:
                # The cell no longer owns this tenant: our map is stale. Refresh it and try once more; once more
                # again only on a route newer than that one (a write held while a move back froze the tenant meets
                # that move's flip too), so a map that does not change ends the retries.
                misdirected_epoch = forward.route.epoch
                try:
                    await self.reload("misdirected")
                except Exception as exc:  # noqa: BLE001 - the control plane is down: answer the cell's 421 as is
                    log.warning("reload after a 421 failed: %r", exc)
                newer = self.table.get(forward.tenant_id)
                if newer is None:
                    break
                forward.route = newer
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
                forward.route = self.table.get(forward.tenant_id) or forward.route
            else:
                break
            status, response_headers, response_body = await self._forward(
                forward.route, forward.method, forward.target, forward.headers, forward.body)
        return status, response_headers, response_body

    def _finish(self, forward: "_Forward", status: int, headers, body: bytes) -> None:
        """What the cell's final answer says about the credentials, the metrics; then the answer goes out."""
        tenant_id = forward.tenant_id
        if status == 401:
            self.credentials.forget(forward.digest)
            self._auth_failed(forward.client.client_host or "", time.monotonic())
        elif (not forward.known and status < 500 and status != 421 and status not in _NOT_KEY_CHECKED
              and _key_checked(forward.target)):
            # An answer of the cell's own, past its key check (not a 5xx: the router's 503 when the cell is
            # down; nor a 421, which checked nothing; nor an answer to a path the cell does not guard, or one its
            # server gives before any check): the credentials are good. The tenant pays for this one.
            now = time.monotonic()
            self.credentials.remember(forward.digest, tenant_id, now)
            self.limiter.charge(tenant_id, forward.route.rate_per_s, forward.route.burst, now)
        self.metrics.observe(forward.route.cell, status, tenant_id, time.monotonic() - forward.started)
        forward.client.answer(status, headers, body)

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
        except UpstreamError as exc:
            return self._failed(exc)
        return _relayed(response)

    def _failed(self, exc: UpstreamError):
        """The router's answer when no complete answer came from the cell."""
        if isinstance(exc, ConnectFailed):
            return self._unavailable(503, "cell_unavailable", "Service Unavailable",
                                     "The tenant's cell cannot be reached; retry later.")
        if isinstance(exc, UpstreamTimeout):
            return self._unavailable(504, "cell_timeout", "Gateway Timeout", "The tenant's cell did not answer in time.")
        return self._unavailable(502, "cell_failed", "Bad Gateway",
                                 "The tenant's cell failed to answer; the request may or may not have been "
                                 "applied (retry with the same Idempotency-Key).")

    def _unavailable(self, status: int, code: str, title: str, detail: str):
        body = problem_body(status, code, detail, title=title)
        return status, _PROBLEM + [(b"retry-after", str(self.settings.retry_after_s).encode()),
                                   (b"content-length", str(len(body)).encode())], body

    def _local(self, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if path == "/healthz":
            return _own(200, _JSON, b'{"status":"ok"}')
        if path == "/readyz":
            return self._readiness()
        if path == "/startupz":
            # Started: the routing table is loaded (it stays loaded), whatever the cells' health. Before, the router
            # would answer 401 to every tenant. A pod's startup probe: a flag read, no look at the cells.
            return _own(200, _JSON, b'{"started":true}') if self.loaded else self._not_loaded()
        # /metrics names every tenant: it is served on the metrics listener only (metrics_answer).
        return problem_answer(404, "not_found", "No such resource.")

    def metrics_answer(self, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The metrics listener's only resource."""
        if path != "/metrics":
            return problem_answer(404, "not_found", "No such resource.")
        self.metrics.routes.set(len(self.table.routes))
        return _own(200, [(b"content-type", CONTENT_TYPE_LATEST.encode())], generate_latest(self.metrics.registry))

    def _not_loaded(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return _own(503, _PROBLEM, problem_body(503, "not_ready", "The routing table is not loaded yet.",
                                                title="Service Unavailable", pubsub=self.redis_connected))

    def _readiness(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if not self.loaded:
            return self._not_loaded()
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
            with url_refusals_redacted("ROUTER_CONTROL_PLANE_DATABASE_URL"):
                self._db = await asyncpg.create_pool(self.settings.control_plane_database_url, min_size=1,
                                                     max_size=2, timeout=self.settings.connect_timeout_s,
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
            client = pubsub = None
            try:
                with url_refusals_redacted("ROUTER_REDIS_URL"):
                    client = redis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=2,
                                                  health_check_interval=10)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
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
                    if pubsub is not None:
                        await pubsub.aclose()
                    if client is not None:
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


_NOT_RELAYED = problem_answer(404, "not_found", "No such path: the API is under /api/.")


def _relayed(response: Response):
    """The cell's answer as the client gets it (its head framed for the client's connection by upstream.py)."""
    return response.status, response.head, response.body


class _Forward(msgspec.Struct):
    """A request admitted by the router, on its way to the tenant's cell (a msgspec Struct: made several times faster
    than a class with an __init__ of its own)."""

    router: Router
    client: object
    route: Route
    tenant_id: str
    digest: bytes
    known: bool
    method: bytes
    target: bytes
    headers: list
    body: bytes
    started: float

    def relayed(self, response: Response | None, error: UpstreamError | None) -> None:
        """The fast path's end, called by the cell's connection: finish here, or go on in a task when the
        answer asks for a retry."""
        router = self.router
        try:
            if error is None:
                status = response.status
                if status != 421 and (status != 503 or _FROZEN_CODE not in response.body):
                    router._finish(self, status, response.head, response.body)  # the common case
                    return
                answer = _relayed(response)
            else:
                answer = router._failed(error)
            status = answer[0]
            if status == 421 or (status == 503 and _FROZEN_CODE in answer[2]):
                self.client.hold(asyncio.get_running_loop().create_task(self._retried(answer)))
                return
            router._finish(self, *answer)
        except Exception:  # noqa: BLE001 - a bug of ours must not hang the client: 500, and log it
            log.exception("request failed in the router")
            self.client.answer(*problem_answer(500, "internal_error", "The router failed to handle the request."))

    async def _retried(self, answer) -> None:
        try:
            self.router._finish(self, *await self.router._retry(self, answer))
        except Exception:  # noqa: BLE001 - as above
            log.exception("request failed in the router")
            self.client.answer(*problem_answer(500, "internal_error", "The router failed to handle the request."))
