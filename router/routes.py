"""The pure part of the router: the tenant -> cell map and the per-tenant token buckets. No IO."""

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

    __slots__ = ("routes",)

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes

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

    def take(self, now: float, rate: float, burst: float) -> float:
        """0 when a request may pass; otherwise the seconds until one token is back."""
        if rate != self.rate or burst != self.burst:
            self.rate, self.burst = rate, burst
            self.tokens = min(self.tokens, burst)
        self.tokens = min(burst, self.tokens + (now - self.updated_at) * rate)
        self.updated_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate


class RateLimiter:
    """One bucket per tenant; rate 0 means unlimited. Buckets are bounded: the least recently created
    ones are dropped first when the bound is hit (a dropped bucket restarts full, which only forgives)."""

    def __init__(self, buckets_max: int) -> None:
        self.buckets: dict[str, TokenBucket] = {}
        self.buckets_max = buckets_max

    def wait_s(self, tenant_id: str, rate: float, burst: float, now: float) -> float:
        if rate <= 0:
            return 0.0
        bucket = self.buckets.get(tenant_id)
        if bucket is None:
            if len(self.buckets) >= self.buckets_max:
                self.buckets.pop(next(iter(self.buckets)))
            bucket = self.buckets[tenant_id] = TokenBucket(rate, burst, now)
        return bucket.take(now, rate, burst)
