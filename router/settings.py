"""The router's typed settings, read from the environment once at start-up (ROUTER_ prefix)."""

from __future__ import annotations

import msgspec

from ledger_common.settings import load_from_env


class RouterSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8000
    control_plane_database_url: str = ""
    # Empty: no pub/sub, the periodic reload alone keeps the map fresh.
    redis_url: str = ""
    routes_channel: str = "ledger:routes"
    # The bound on how stale the map can get when a pub/sub message is lost.
    reload_interval_s: float = 5.0
    # A tenant without its own limit gets this one (0: unlimited).
    rate_limit_per_s_default: int = 1000
    rate_burst_default: int = 2000
    retry_after_s: int = 1
    # A write refused because its tenant is frozen for a move is held and retried for up to this long (the
    # freeze lasts well under a second); past it the client gets the cell's 503 with Retry-After.
    frozen_hold_s: float = 2.0
    # Failed authentication is limited per client address, never charged to the tenant it names (a wrong
    # key must not spend the real client's budget). Credentials the cell has not accepted yet are forwarded
    # while their address's bucket has a token, else 429; each 401 spends one.
    auth_failures_per_s_max: float = 5.0
    auth_failure_burst_max: int = 20
    auth_failure_addresses_max: int = 100_000
    # Credentials the cell accepted (SHA-256 of the Authorization value -> tenant): only their requests are
    # charged to the tenant's bucket. A 401 from the cell forgets them; so does this TTL.
    credentials_known_max: int = 100_000
    credentials_known_ttl_s: float = 60.0
    body_bytes_max: int = 1_048_576
    response_bytes_max: int = 16_777_216
    connections_per_cell_max: int = 64
    connect_timeout_s: float = 2.0
    # A cell's answer must be complete within this (checked by a sweep every tenth of it, at most every second).
    upstream_timeout_s: float = 30.0
    # Below the cells' keep-alive timeout (uvicorn: 5 s), so the router drops an idle connection first.
    idle_connection_s_max: float = 4.0
    tenants_tracked_max: int = 100_000
    # Tenants with a time series of their own in /metrics; later ones are counted together as "_other".
    metrics_tenants_max: int = 1000
    # /metrics is served on its own listener, never on the public port (it names tenants). Port 0: off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9180
    # /readyz is 200 only with a routing table and, for every cell that has tenants, a successful check of
    # the cell's `cell_health_path` within `cell_health_ttl_s`; checked in the background, never per request.
    cell_health_path: str = "/readyz"
    cell_health_interval_s: float = 1.0
    cell_health_timeout_s: float = 2.0
    cell_health_ttl_s: float = 5.0
    # The router's own HTTP server (router/server.py).
    keep_alive_s: float = 5.0  # an idle client connection closes after this
    request_read_s: float = 30.0  # a request's head and body must all arrive within this of its first byte
    head_bytes_max: int = 65_536  # request line and headers; over it: 431
    shutdown_s: float = 10.0  # on SIGTERM, how long answers in flight may take before connections close


def load_settings(environ: dict[str, str] | None = None, **overrides) -> RouterSettings:
    """Read ROUTER_<FIELD> for every field; explicit overrides win."""
    return load_from_env(RouterSettings, ("ROUTER_",), environ, **overrides)
