"""Who gets in, against a model: tenants and keys made and revoked through ledgerctl's own operations, requests
through a real router to real cells, and after every step what each client saw checked against the README.

Hypothesis draws plans (lists of operations) over three tenants: A on cell-1 with a small rate limit, B on cell-2,
and a spare C that plans create (on either cell), delete and create again under the same id. Operations: issue a
key, revoke one, wait for a revocation, use a live or revoked key (a read, a write, another tenant's ledger read or
patched), name a tenant with another tenant's key, malformed or missing credentials, a burst of reads near the
limit, delete C, create C.

What the model says (README "Operating it: ledgerctl", "Architecture"):
- a live key is 2xx, never 401 (a cache never refuses it); once its tenant is routed (the router learns of a
  created tenant by pub/sub, bounded by ROUTER_RELOAD_INTERVAL_S);
- a revoked key is refused (401 problem+json, the one unauthorized body) by every cell within
  CELL_API_KEY_CACHE_TTL_S (0.5 s) of `keys revoke` returning, and never 2xx again once refused;
- another tenant's key, an unknown tenant, malformed credentials (empty, no colon, no password, very long, not
  UTF-8, bad base64, another scheme) and none: 401 with that body; a head past ROUTER_HEAD_BYTES_MAX is 431;
  never a 5xx, never a 400;
- another tenant's ids are 404 (read or patch), never 200;
- a 429 only past the documented limit, with Retry-After: `rate_limited` when the tenant's token bucket
  (ROUTER rate limit, charged for the credentials a cell accepted) is empty, `auth_failures_rate_limited` for
  credentials the router does not know yet when the client address's bucket of failed attempts
  (auth_failures_per_s_max, auth_failure_burst_max; every 401 spends one) is empty. The model keeps a lower bound
  of both buckets (every request that may have been charged, charged when its answer came, the bucket read when the
  refused request was sent): a 429 while the bound holds a token fails; a burst is served at most burst + rate x
  its time + 1 times;
- nothing a refused request asked is written: each tenant's ledgers, counted through the API (directly at the
  cell, so that counting spends no rate limit), are exactly those its 201s created, none of them patched by
  another tenant;
- `tenants delete` of C succeeds when it holds nothing (no ledger, no live key), else exit 1 tenant_not_empty.

PROPERTY_EXAMPLES / PROPERTY_STEPS make a longer soak (default ~20 s).
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from dataclasses import dataclass, field

import httpx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from control_plane import operations
from control_plane.errors import LedgerctlError
from ledger_common.basic_auth import UNAUTHORIZED_BODY

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "10"))
STEPS = int(os.environ.get("PROPERTY_STEPS", "18"))

REVOKE_BOUND_S = 0.5  # CELL_API_KEY_CACHE_TTL_S of the cells (conftest cells_platform), the README's bound
ROUTE_BOUND_S = 0.5 + 2.0  # the router's reload interval here, plus slack for a loaded machine
A_RATE_PER_S, A_BURST = 4, 6  # tenant A's limit (ledgerctl tenants rate-limit)
FAILURES_PER_S, FAILURE_BURST = 5.0, 20  # the router's defaults for an address's failed attempts
KNOWN_TTL_S = 50.0  # below the router's credentials_known_ttl_s (60): a key accepted this recently is known
HEAD_BYTES_MAX = 65_536
EPS = 0.02

MALFORMED = ["none", "empty", "basic_empty", "no_colon", "no_password", "no_user", "long_600", "long_8k",
             "long_60k", "long_70k", "non_utf8_decoded", "non_utf8_raw", "bearer", "bad_base64", "unpadded",
             "unknown_tenant", "lowercase_scheme_wrong_key"]

tenant = st.sampled_from([0, 1, 2])
operation = st.one_of(
    st.tuples(st.just("issue"), tenant),
    st.tuples(st.just("revoke"), tenant, st.integers(0, 3)),
    st.tuples(st.just("await_revoked"), tenant),
    st.tuples(st.just("use"), tenant, st.sampled_from(["live", "revoked"]),
              st.sampled_from(["read", "write", "other_read", "other_patch"])),
    st.tuples(st.just("cross"), tenant, tenant),
    st.tuples(st.just("malformed"), tenant, st.sampled_from(MALFORMED)),
    st.tuples(st.just("burst"), tenant, st.integers(1, 12)),
    st.tuples(st.just("delete"), st.just(2)),
    st.tuples(st.just("create"), st.just(2), st.sampled_from(["cell-1", "cell-2"])),
)


def basic_value(user: str | bytes, password: str | bytes) -> bytes:
    raw = (user.encode() if isinstance(user, str) else user) + b":" + (
        password.encode() if isinstance(password, str) else password)
    return b"Basic " + base64.b64encode(raw)


class Bucket:
    """A lower bound of a router token bucket (routes.TokenBucket): every request that may have been charged to it,
    charged when its answer came (the latest it may have been), read when the refused request was sent (the earliest
    the router may have decided). A 429 is right only while this bound is below one token."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.charges: list[float] = []

    def tokens_at_least(self, now: float) -> float:
        tokens, at = self.burst, None
        for t in sorted(c for c in self.charges if c <= now):
            if at is not None:
                tokens = min(self.burst, tokens + (t - at) * self.rate)
            at = t
            tokens = max(-self.burst, tokens - 1.0)
        if at is not None:
            tokens = min(self.burst, tokens + (now - at) * self.rate)
        return tokens


@dataclass
class MKey:
    id: str
    secret: str
    revoked_at: float | None = None  # monotonic time `keys revoke` returned
    refused: bool = False  # a 401 seen since the revocation
    accepted_at: float = -1e9  # the last 2xx/4xx a cell gave it (the router knows it for a while)


@dataclass
class MTenant:
    id: str
    cell: str | None  # None: not there (C before it is created, or deleted)
    keys: list[MKey] = field(default_factory=list)
    observer: str | None = None  # a key the plan never uses nor revokes: for counting through the API
    ledgers: dict[str, str] = field(default_factory=dict)  # name -> id, every ledger a 201 created
    refused_names: set[str] = field(default_factory=set)
    bucket: Bucket | None = None
    routed_after: float = 0.0  # a live key must be served once the router routes the tenant

    def live(self) -> list[MKey]:
        return [k for k in self.keys if k.revoked_at is None]


class World:
    """One router (with pub/sub, reloading every 0.5 s) over the session's two real cells; a plan's tenants."""

    def __init__(self, platform, router) -> None:
        self.platform = platform
        self.router = router
        self.addresses: dict[str, Bucket] = {}
        self.examples = 0

    async def cell_urls(self) -> dict[str, str]:
        rows = await self.platform.conn.fetch("SELECT name, api_url FROM cells")
        return {r["name"]: r["api_url"] for r in rows}

    async def run(self, plan) -> set[str]:
        self.examples += 1
        address = f"127.0.{1 + self.examples // 250}.{2 + self.examples % 250}"
        plan_run = PlanRun(self, address, self.addresses.setdefault(address, Bucket(FAILURES_PER_S, FAILURE_BURST)))
        await plan_run.start()
        try:
            for n, step in enumerate(plan):
                try:
                    await getattr(plan_run, step[0])(*step[1:])
                    await plan_run.observe()
                except AssertionError as exc:
                    raise AssertionError(f"{exc}\nsteps={plan[:n + 1]}") from None
        finally:
            await plan_run.close()
        return plan_run.events


class PlanRun:
    def __init__(self, world: World, address: str, failures: Bucket) -> None:
        self.w = world
        self.p = world.platform
        self.failures = failures
        self.http = httpx.AsyncClient(base_url=world.router.url, timeout=30,
                                      transport=httpx.AsyncHTTPTransport(local_address=address))
        self.tenants: list[MTenant] = []
        self.touched: set[int] = set()
        self.cells: dict[str, str] = {}
        self.events: set[str] = set()  # for hypothesis' statistics, recorded in its own thread

    async def start(self) -> None:
        self.cells = await self.w.cell_urls()
        suffix = uuid.uuid4().hex[:8]
        self.tenants = [MTenant(f"am-a-{suffix}", None), MTenant(f"am-b-{suffix}", None),
                        MTenant(f"am-c-{suffix}", None)]
        await self._create(0, "cell-1")
        await self._create(1, "cell-2")
        await operations.set_rate_limit(self.p.conn, self.p.settings, self.tenants[0].id, A_RATE_PER_S, A_BURST)
        self.tenants[0].bucket = Bucket(A_RATE_PER_S, A_BURST)
        assert await self._until(lambda: self._route(0, rate=A_RATE_PER_S), ROUTE_BOUND_S), "rate limit not routed"
        await self._write(0, self.tenants[0].live()[0])  # something of A's and B's for the other to ask for
        await self._write(1, self.tenants[1].live()[0])

    async def close(self) -> None:
        await self.http.aclose()

    # -- helpers ---------------------------------------------------------------------------------------------

    async def _until(self, check, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not (ok := check()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return ok

    def _route(self, i: int, rate: float | None = None) -> bool:
        t = self.tenants[i]
        route = self.w.router.server.router.table.get(t.id)
        if t.cell is None:
            return route is None
        return route is not None and route.cell == t.cell and (rate is None or route.rate_per_s == rate)

    async def _create(self, i: int, cell: str) -> None:
        t = self.tenants[i]
        await operations.create_tenant(self.p.conn, self.p.settings, t.id, "model", cell)
        t.cell, t.ledgers, t.refused_names = cell, {}, set()
        t.bucket = Bucket(1000, 2000)  # the router's default limit
        row, secret = await operations.create_key(self.p.conn, self.p.settings, t.id)
        t.keys.append(MKey(str(row["id"]), secret))
        _, t.observer = await operations.create_key(self.p.conn, self.p.settings, t.id)
        # The router learns of the tenant by pub/sub (or its reload): from then on its keys are served.
        assert await self._until(lambda: self._route(i), ROUTE_BOUND_S), f"tenant {t.id} not routed on {cell}"
        t.routed_after = time.monotonic()

    async def send(self, method: str, path: str, authorization: bytes | None, json=None,
                   charged_to: int | None = None, key: MKey | None = None) -> tuple[httpx.Response, float, float]:
        headers = {} if authorization is None else {"authorization": authorization}
        sent = time.monotonic()
        response = await self.http.request(method, path, headers=headers, json=json)
        got = time.monotonic()
        status = response.status_code
        if charged_to is not None and status != 429 and (key is not None or status != 401):
            # Maybe charged to the tenant: a key the router knew takes a token whatever the cell says (the bound
            # counts it: a lower bound may count too many), one it did not know is charged once a cell accepts it.
            self.tenants[charged_to].bucket.charges.append(got)
        if status == 401:
            self.failures.charges.append(got)  # every 401 spends one of the address's failed attempts
            assert response.content == UNAUTHORIZED_BODY, response.content
            assert response.headers["content-type"] == "application/problem+json"
            if key is not None:
                key.accepted_at = -1e9  # a 401 makes the router forget the credentials
        elif status == 429:
            assert response.headers["content-type"] == "application/problem+json", response.headers
            assert int(response.headers["retry-after"]) >= 1, response.headers
            code = response.json()["code"]
            if code == "rate_limited":
                assert charged_to is not None, ("429 rate_limited for credentials naming no tenant", path)
                bucket = self.tenants[charged_to].bucket
                assert bucket.tokens_at_least(sent) < 1 + EPS, (
                    "429 rate_limited within the tenant's limit", bucket.tokens_at_least(sent), len(bucket.charges))
            else:
                assert code == "auth_failures_rate_limited", response.text
                assert key is None or sent - key.accepted_at > KNOWN_TTL_S, "429 for credentials the router knows"
                assert self.failures.tokens_at_least(sent) < 1 + EPS, (
                    "429 auth_failures_rate_limited with failed attempts left", self.failures.tokens_at_least(sent))
        elif status == 400:
            raise AssertionError(f"400 for {method} {path}: {response.headers} {response.text}")
        elif key is not None and charged_to is not None:
            key.accepted_at = got  # a cell's answer past its key check: the router knows the key now
        return response, sent, got

    def _refused(self, status: int) -> bool:
        return status in (401, 429)

    async def _write(self, i: int, key: MKey | None, authorization: bytes | None = None,
                     charged_to: int | None = None, own: bool = True) -> tuple[httpx.Response, float]:
        """POST a ledger with a name of its own for tenant i with its key, or with other credentials (own=False)."""
        t = self.tenants[i]
        name = f"l-{uuid.uuid4().hex[:10]}"
        if own:
            authorization = basic_value(t.id, key.secret)
            charged_to = i
        response, sent, _ = await self.send("POST", "/api/ledgers", authorization, {"name": name},
                                            charged_to=charged_to, key=key)
        if response.status_code == 201:
            t.ledgers[name] = response.json()["id"]
        else:
            t.refused_names.add(name)
        self.touched.add(i)
        return response, sent

    def _check_live(self, i: int, key: MKey, response: httpx.Response, sent: float, expect: int) -> None:
        status = response.status_code
        if status == 429:
            return  # checked in send
        assert status == expect, (f"a live key of tenant {i} got {status}", response.text)

    def _check_revoked(self, key: MKey, response: httpx.Response, sent: float) -> None:
        status = response.status_code
        if status == 429:
            return
        if status == 401:
            key.refused = True
            return
        assert not key.refused, ("a revoked key served again after a 401", status, response.text)
        assert sent < key.revoked_at + REVOKE_BOUND_S, (
            f"a revoked key served {sent - key.revoked_at:.3f} s after `keys revoke` returned", status)

    # -- operations ------------------------------------------------------------------------------------------

    async def issue(self, i: int) -> None:
        t = self.tenants[i]
        if t.cell is None:
            with_error = None
            try:
                await operations.create_key(self.p.conn, self.p.settings, t.id)
            except LedgerctlError as error:
                with_error = error.code
            assert with_error == "unknown_tenant", with_error
            return
        row, secret = await operations.create_key(self.p.conn, self.p.settings, t.id)
        key = MKey(str(row["id"]), secret)
        t.keys.append(key)
        response, sent, _ = await self.send("GET", "/api/ledgers", basic_value(t.id, secret), charged_to=i, key=key)
        self._check_live(i, key, response, sent, 200)  # at once: no cache refuses a key just issued

    async def revoke(self, i: int, n: int) -> None:
        t = self.tenants[i]
        live = t.live()
        if t.cell is None or not live:
            return
        key = live[n % len(live)]
        await operations.revoke_key(self.p.conn, self.p.settings, t.id, key.id)
        key.revoked_at = time.monotonic()

    async def await_revoked(self, i: int) -> None:
        """Every revoked key of the tenant is refused within the bound (polled with a deadline)."""
        t = self.tenants[i]
        for key in t.keys:
            if key.revoked_at is None or key.refused:
                continue
            deadline = key.revoked_at + REVOKE_BOUND_S + 2.0
            while True:
                response, sent, _ = await self.send("GET", "/api/ledgers", basic_value(t.id, key.secret),
                                                    charged_to=i, key=key)
                self._check_revoked(key, response, sent)
                if key.refused or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert key.refused, f"a revoked key still not refused {time.monotonic() - key.revoked_at:.2f} s later"

    async def use(self, i: int, which: str, what: str) -> None:
        t = self.tenants[i]
        keys = t.live() if which == "live" else [k for k in t.keys if k.revoked_at is not None]
        if not keys:
            return
        key = keys[-1]
        auth = basic_value(t.id, key.secret)
        other = self.tenants[(i + 1) % 2 if i == 2 else 1 - i]
        if what == "read":
            response, sent, _ = await self.send("GET", "/api/ledgers?per_page=100", auth, charged_to=i, key=key)
            expect = 200
            if response.status_code == 200 and t.cell is not None:
                names = {ledger["name"] for ledger in response.json()}
                assert names == set(t.ledgers), (names, set(t.ledgers))
        elif what == "write":
            response, sent = await self._write(i, key)
            expect = 201
        else:
            if not other.ledgers:
                return
            ledger_id = next(iter(other.ledgers.values()))
            if what == "other_read":
                response, sent, _ = await self.send("GET", f"/api/ledgers/{ledger_id}", auth, charged_to=i, key=key)
            else:
                response, sent, _ = await self.send("PATCH", f"/api/ledgers/{ledger_id}", auth,
                                                    {"description": "not yours"}, charged_to=i, key=key)
                self.touched.add(self.tenants.index(other))
            expect = 404
            assert response.status_code != 200, ("another tenant's ledger served", what, response.text)
            if response.status_code == 404:
                assert response.headers["content-type"] == "application/problem+json"
        if t.cell is None:  # a deleted tenant's keys: revoked before its delete
            assert response.status_code in (401, 429), response.status_code
            return
        if which == "live":
            self._check_live(i, key, response, sent, expect)
        else:
            self._check_revoked(key, response, sent)

    async def cross(self, i: int, j: int) -> None:
        """Tenant i's id with tenant j's key (or i's own id, with a key of i's that j's secret is not)."""
        if i == j:
            return
        t, o = self.tenants[i], self.tenants[j]
        if not o.keys:
            return
        key = o.keys[-1]
        response, _, _ = await self.send("GET", "/api/ledgers", basic_value(t.id, key.secret), charged_to=i)
        assert response.status_code in (401, 429), ("another tenant's key let in", response.status_code)
        response, _ = await self._write(i, None, basic_value(t.id, key.secret), charged_to=i, own=False)
        assert response.status_code in (401, 429), ("another tenant's key wrote", response.status_code)

    async def malformed(self, i: int, kind: str) -> None:
        t = self.tenants[i]
        secret = t.keys[-1].secret if t.keys else "lk_none"
        value: bytes | None
        if kind == "none":
            value = None
        elif kind == "empty":
            value = b""
        elif kind == "basic_empty":
            value = b"Basic"  # (a client sends no trailing space: h11 refuses one)
        elif kind == "no_colon":
            value = b"Basic " + base64.b64encode(f"{t.id}{secret}".encode())
        elif kind == "no_password":
            value = basic_value(t.id, "")
        elif kind == "no_user":
            value = basic_value("", secret)
        elif kind.startswith("long_"):
            size = {"600": 450, "8k": 6_000, "60k": 45_000, "70k": 53_000}[kind[5:]]  # its base64 is 4/3 as long
            value = basic_value(t.id, "x" * size)
        elif kind == "non_utf8_decoded":
            value = basic_value(t.id.encode() + b"\xff", b"\xfe" + secret.encode())
        elif kind == "non_utf8_raw":
            value = b"Basic \xff\xfe" + base64.b64encode(f"{t.id}:{secret}".encode())
        elif kind == "bearer":
            value = b"Bearer " + secret.encode()
        elif kind == "bad_base64":
            value = b"Basic !!" + base64.b64encode(f"{t.id}:{secret}".encode())
        elif kind == "unpadded":  # a live key, its base64 without the padding it needs: refused as the cell reads it
            raw = f"{t.id}:{secret}"
            value = b"Basic " + base64.b64encode(raw.encode()).rstrip(b"=")
            if len(raw.encode()) % 3 == 0:
                value = b"Basic " + base64.b64encode((raw + "x").encode()).rstrip(b"=")  # a wrong key, unpadded
        elif kind == "unknown_tenant":
            value = basic_value(f"nobody-{uuid.uuid4().hex[:6]}", secret)
        else:  # lowercase_scheme_wrong_key
            value = b"basic " + base64.b64encode(f"{t.id}:lk_wrong".encode())
        charged_to = i if kind == "lowercase_scheme_wrong_key" else None  # the only ones naming tenant i
        for method in ("GET", "POST"):
            if method == "GET":
                response, _, _ = await self.send("GET", "/api/ledgers", value, charged_to=charged_to)
            else:
                response, _ = await self._write(i, None, value, charged_to=charged_to, own=False)
            status = response.status_code
            if kind == "long_70k":
                assert status == 431 and response.headers["content-type"] == "application/problem+json", status
                assert response.json()["code"] == "headers_too_large", response.text
                # (the router closes the connection: the client opens another)
            else:
                assert status in (401, 429), (kind, status, response.text)

    async def burst(self, i: int, n: int) -> None:
        """n reads as fast as one connection sends them, with a live key; at most burst + rate x time + 1 served."""
        t = self.tenants[i]
        live = t.live()
        if t.cell is None or not live:
            return
        key = live[-1]
        auth = basic_value(t.id, key.secret)
        started = time.monotonic()
        statuses = []
        for _ in range(n):
            response, sent, _ = await self.send("GET", "/api/ledgers", auth, charged_to=i, key=key)
            self._check_live(i, key, response, sent, 200)
            statuses.append(response.status_code)
        elapsed = time.monotonic() - started
        bucket = t.bucket
        assert statuses.count(200) <= bucket.burst + bucket.rate * elapsed + 1, (statuses, elapsed)
        if 429 in statuses:
            self.events.add("a burst met the tenant's rate limit")

    async def delete(self, i: int) -> None:
        t = self.tenants[i]
        if t.cell is None:
            return
        empty = not t.ledgers and not t.live()
        if empty:
            [observer] = [k for k in await operations.list_keys(self.p.conn, t.id)
                          if k["revoked_at"] is None]
            await operations.revoke_key(self.p.conn, self.p.settings, t.id, str(observer["id"]))
        code = None
        try:
            await operations.delete_tenant(self.p.conn, self.p.settings, t.id)
        except LedgerctlError as error:
            code = error.code
        if empty:
            assert code is None, code
            t.cell, t.observer = None, None
            t.ledgers, t.refused_names = {}, set()
            assert await self._until(lambda: self._route(i), ROUTE_BOUND_S), "a deleted tenant still routed"
            self.events.add("a tenant deleted")
        else:
            assert code == "tenant_not_empty", code

    async def create(self, i: int, cell: str) -> None:
        t = self.tenants[i]
        if t.cell is not None:
            return
        await self._create(i, cell)
        self.events.add("a tenant created (again)")

    # -- after every step ------------------------------------------------------------------------------------

    async def observe(self) -> None:
        """Each touched tenant's ledgers, counted at its cell: exactly those its 201s created, none patched."""
        for i in sorted(self.touched):
            t = self.tenants[i]
            if t.cell is None or t.observer is None:
                continue
            async with httpx.AsyncClient(base_url=self.cells[t.cell], auth=(t.id, t.observer), timeout=30) as cell:
                response = await cell.get("/api/ledgers", params={"per_page": "100"})
            assert response.status_code == 200, response.text
            listed = {ledger["name"]: ledger for ledger in response.json()}
            assert set(listed) == set(t.ledgers), ("ledgers written by refused requests, or lost",
                                                    set(listed) ^ set(t.ledgers))
            assert not t.refused_names & set(listed)
            assert all(ledger["description"] is None for ledger in listed.values()), listed
        self.touched.clear()


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(plan=st.lists(operation, min_size=STEPS // 2, max_size=STEPS))
def _check_plan(world: World, loop: asyncio.AbstractEventLoop, plan) -> None:
    for seen in asyncio.run_coroutine_threadsafe(world.run(plan), loop).result():
        event(seen)


async def test_who_gets_in_is_what_the_readme_says(cells_platform):
    router = await cells_platform.start_router()
    try:
        world = World(cells_platform, router)
        # Hypothesis runs in a thread of its own; each plan runs in this loop, where the cells and router serve.
        await asyncio.to_thread(_check_plan, world, asyncio.get_running_loop())
    finally:
        await router.stop()
