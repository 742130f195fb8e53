"""The pure part of the router: the tenant -> cell map, the token buckets, the accepted credentials. No IO."""

from __future__ import annotations

import msgspec


class Route(msgspec.Struct, frozen=True):
    tenant_id: str
    cell: str
    api_url: str
    epoch: int
    rate_per_s: float
    burst: float


class RoutingTable:
    """An immutable snapshot; the router swaps in a new one on every reload (a reference swap is atomic)."""

    __slots__ = ("cells", "routes")

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        # The cells that have tenants, with their API URL: the ones readiness depends on.
        self.cells = {route.cell: route.api_url for route in routes.values()}

    def get(self, tenant_id: str) -> Route | None:
        return self.routes.get(tenant_id)

    def merged_with(self, newer: "RoutingTable") -> "RoutingTable":
        """`newer`, except that a tenant never goes back to an older epoch (a slow reload racing a fast
        one must not undo a move)."""
        routes = dict(newer.routes)
        for tenant_id, old in self.routes.items():
            new = routes.get(tenant_id)
            if new is not None and new.epoch < old.epoch:
                routes[tenant_id] = old
        return RoutingTable(routes)


def build_table(rows, rate_per_s_default: float, burst_default: float) -> RoutingTable:
    routes = {}
    for row in rows:
        rate = row["rate_limit_per_s"] or rate_per_s_default
        burst = row["rate_burst"] or (burst_default if not row["rate_limit_per_s"] else rate)
        routes[row["tenant_id"]] = Route(row["tenant_id"], row["cell"], row["api_url"].rstrip("/"),
                                         row["epoch"], float(rate), float(burst))
    return RoutingTable(routes)


class TokenBucket:
    __slots__ = ("tokens", "updated_at", "rate", "burst")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated_at = now

    def take(self, now: float, rate: float, burst: float, take: bool = True) -> float:
        """0 when a request may pass (and, with `take`, one token is spent); otherwise the seconds until one
        token is back. The one place the bucket refills."""
        if rate != self.rate or burst != self.burst:
            self.rate, self.burst = rate, burst
            self.tokens = min(self.tokens, burst)
        tokens = self.tokens + (now - self.updated_at) * rate
        if tokens > burst:  # (min() costs a call)
            tokens = burst
        self.updated_at = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0 if take else tokens
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / rate

    def charge(self, now: float, rate: float, burst: float) -> None:
        """Spend one token after the fact, into debt if need be (down to -burst): what was charged late is
        still paid for."""
        self.take(now, rate, burst, take=False)
        self.tokens = max(-burst, self.tokens - 1.0)


class RateLimiter:
    """One bucket per key (a tenant, a client address); rate 0 means unlimited. Buckets are bounded: the least
    recently created ones are dropped first when the bound is hit (a dropped bucket restarts full, which only
    forgives)."""

    def __init__(self, buckets_max: int) -> None:
        self.buckets: dict[str, TokenBucket] = {}
        self.buckets_max = buckets_max

    def wait_s(self, key: str, rate: float, burst: float, now: float, take: bool = True) -> float:
        """0 when a request may pass (spending a token unless `take` is false); else the seconds to wait."""
        if rate <= 0:
            return 0.0
        return (self.buckets.get(key) or self._bucket(key, rate, burst, now)).take(now, rate, burst, take)

    def charge(self, key: str, rate: float, burst: float, now: float) -> None:
        if rate > 0:
            self._bucket(key, rate, burst, now).charge(now, rate, burst)

    def _bucket(self, key: str, rate: float, burst: float, now: float) -> TokenBucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.buckets_max:
                self.buckets.pop(next(iter(self.buckets)))
            bucket = self.buckets[key] = TokenBucket(rate, burst, now)
        return bucket


class KnownCredentials:
    """Credentials a cell accepted: a digest of the Authorization value -> tenant id, for `ttl_s` at most.
    Bounded: the oldest entries go first (a forgotten entry only costs one re-check by the cell)."""

    def __init__(self, entries_max: int, ttl_s: float) -> None:
        self.entries: dict[bytes, tuple[str, float]] = {}
        self.entries_max = entries_max
        self.ttl_s = ttl_s

    def tenant(self, digest: bytes, now: float) -> str | None:
        entry = self.entries.get(digest)
        if entry is None:
            return None
        if entry[1] <= now:
            del self.entries[digest]
            return None
        return entry[0]

    def remember(self, digest: bytes, tenant_id: str, now: float) -> None:
        self.entries.pop(digest, None)
        if len(self.entries) >= self.entries_max:
            self.entries.pop(next(iter(self.entries)))
        self.entries[digest] = (tenant_id, now + self.ttl_s)

    def forget(self, digest: bytes) -> None:
        self.entries.pop(digest, None)
