"""The cell's typed settings, read from the environment once at start-up (CELL_ and LEDGER_ prefixes)."""

from __future__ import annotations

from typing import Literal

import msgspec

from cell.ledger.commands import BULK_RESOURCES_MAX, ENTRIES_PER_TRANSACTION_MAX, PER_PAGE_MAX
from cell.ledger.webhooks import WEBHOOK_RETRY_WINDOW_S_DEFAULT
from cell.store.sweep import SWEEP_ACCOUNTS_MAX_DEFAULT, SWEEP_AFTER_S_DEFAULT, SWEEP_INTERVAL_S_DEFAULT, unapplied_age_max_s
from ledger_common.outbound import OutboundPolicy
from ledger_common.settings import load_from_env


class CellSettings(msgspec.Struct, frozen=True, kw_only=True):
    name: str = "cell-1"
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8101
    processes: int = 1  # server processes sharing the port (each with its own pool of db_pool_max)
    # Prometheus /metrics on its own listener, never on the public port (0: none). Loopback by default: scrape
    # it from the host, or set metrics_host to the pod's address.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    db_pool_min: int = 2
    db_pool_max: int = 12
    # The role pooled connections run as (0003_app_role.sql); "" when the login role is already restricted.
    db_role: str = "ledger_app"
    # The role of the process's cross-tenant work (sweeper, events sequencer, metrics, /readyz) on a small pool of
    # its own: row-level security (0110) holds db_role to the tenant of each request, ledger_worker sees all.
    db_background_role: str = "ledger_worker"
    db_background_pool_max: int = 3
    # Bounds on the database (seconds / ms, 0 = off): a request that gets no connection within db_acquire_s_max
    # is 503 database_unavailable; a balance-row lock waited for longer than lock_wait_ms_max is 503
    # lock_timeout; a statement runs at most statement_ms_max; a session idle inside a transaction (a stalled
    # process) is ended by the server after idle_in_transaction_ms_max, releasing its locks.
    db_acquire_s_max: float = 5.0
    lock_wait_ms_max: int = 2_000
    statement_ms_max: int = 30_000
    idle_in_transaction_ms_max: int = 5_000
    # hybrid: entries without a lock are queued and applied by the cell's workers; sync: every entry is
    # applied in its posting (the baseline the async path is measured against).
    posting_mode: Literal["hybrid", "sync"] = "hybrid"
    # Limits (TigerBeetle style: everything bounded, qualifier last).
    entries_per_transaction_max: int = ENTRIES_PER_TRANSACTION_MAX
    per_page_max: int = PER_PAGE_MAX
    per_page_default: int = 25
    body_bytes_max: int = 1_048_576
    # The cell's HTTP server (cell/api/server.py): a request's line and headers past head_bytes_max is 431 (counted
    # as they arrive: a header line that never ends is not held), its data past head_bytes_max + 4 x body_bytes_max
    # (head, body, chunk lines, trailer lines) is 413, each closing the connection; a request not all arrived
    # request_read_s after its first byte, or a connection idle keep_alive_s (a new one too), is closed.
    head_bytes_max: int = 65_536
    request_read_s: float = 30.0
    keep_alive_s: float = 5.0
    # At SIGTERM (`python -m cell`, cell.api.serve): /readyz is 503 and no new connection is taken at once; the
    # requests in flight get this long to finish, those still running then are cancelled (503 shutting_down; a
    # posting's statement rolls back), the pools close, exit 0. Below the pod's grace period less its preStop sleep
    # (the Helm chart's cellDefaults.api.shutdownSeconds: 30 - 5 > 20).
    shutdown_drain_s: float = 20.0
    idempotency_key_length_max: int = 255
    # A revoked key works at most this long in a process that verified it just before (one indexed query per key
    # per process per TTL).
    api_key_cache_ttl_s: float = 0.5
    # GET /api/ledger_accounts/{id} (current balances) and POST /api/ledger_transactions answered by cell.api.fast,
    # the same answers for less CPU than Litestar's layers; off: Litestar answers them too (the comparison tests).
    fast_path: bool = True
    account_cache_size_max: int = 100_000
    # Seals list cursors (AES-GCM). Every process of a cell must share it: `python -m cell` makes one up at start
    # when unset; set it when processes are started otherwise, or to keep cursors valid across restarts.
    cursor_secret: str = ""
    # The async path's queue; sync mode ignores them.
    sqs_endpoint_url: str = ""
    sqs_queue_url: str = ""
    sqs_region: str = "us-east-1"
    # Fewer, fuller SQS calls cost less CPU than they add in apply lag: one send a window per API process, matched
    # by the worker's receive interval (WORKER_RECEIVE_EVERY_MS_MIN, 250): about one receive per send, deletes ten
    # at a time. loadtests.async_path at 200 postings/s: 250 ms halves the SQS endpoint's CPU of 100 ms, apply lag
    # p90 ~0.3 s (< 1 s).
    sqs_send_buffer_ms_max: int = 250
    # Group commit (cell/service/posting_groups.py): the postings of a tenant that arrive together (async ones with
    # async ones; those that apply accounts now, sync or balance-locked, with each other, in account order) are
    # written in one database transaction (async ones set-wise, the others one `ledger_post` call each), at most this
    # many a transaction; a group that fails is re-run one posting per transaction. 1: off.
    posting_group_max: int = 32
    # Every API process also sweeps (as every worker process does): effects unapplied longer than sweep_after_s
    # are applied every sweep_interval_s even with no worker, Redis or SQS up. 0: this process does not sweep.
    sweep_interval_s: float = SWEEP_INTERVAL_S_DEFAULT
    sweep_after_s: float = SWEEP_AFTER_S_DEFAULT
    sweep_accounts_max: int = SWEEP_ACCOUNTS_MAX_DEFAULT
    # Events (GET /api/events): this process also positions due events (as the workers do; one sequencer runs at a
    # time): every events_sequence_interval_s while it finds some or this process serves requests (each use case
    # nudges it), so its own events are listed within about that; while the cell is idle it backs off to one round
    # every events_sequence_idle_s, which bounds how late an event written elsewhere (or held back by a long
    # transaction) is listed after an idle spell. 0: this process does not sequence.
    events_sequence_interval_s: float = 0.2
    events_sequence_idle_s: float = 1.0
    # Off only to measure what events cost (loadtests/bench_events.py): no event is written at all.
    events_enabled: bool = True
    # Webhook endpoints (ledger_common/outbound.py): https to public addresses only, unless these allow http to
    # loopback (development) or private addresses (LEDGER_WEBHOOK_* gives the worker the same; ledgerctl has its
    # own, CONTROL_PLANE_WEBHOOK_*).
    webhook_allow_http_loopback: bool = False
    webhook_allow_private_addresses: bool = False
    webhook_retry_window_s: float = WEBHOOK_RETRY_WINDOW_S_DEFAULT
    webhook_endpoints_max: int = 32  # per tenant
    # Bulk requests: resources per request (the body bound, body_bytes_max, applies too).
    bulk_resources_max: int = BULK_RESOURCES_MAX
    # ... and open (pending or processing) per tenant at once: more is 422 too_many_open_bulk_requests.
    bulk_requests_open_max: int = 20
    # Settlements: the entries a settlement may gather when created (more is 422 settlement_too_large: settle up to
    # an earlier effective_at_upper_bound first), so that one request never claims an account's whole history.
    settlement_entries_max: int = 100_000

    @property
    def outbound(self) -> OutboundPolicy:
        return OutboundPolicy(allow_http_loopback=self.webhook_allow_http_loopback,
                              allow_private_addresses=self.webhook_allow_private_addresses)

    @property
    def unapplied_age_max_s(self) -> float:
        """The sweeper's bound, as the metrics, /readyz and `ledgerctl verify` check it."""
        return unapplied_age_max_s(self.sweep_after_s, self.sweep_interval_s or SWEEP_INTERVAL_S_DEFAULT)


def load_settings(environ_prefixes: tuple[str, ...] = ("CELL_", "LEDGER_"), **overrides) -> CellSettings:
    """Read CELL_<FIELD> (then LEDGER_<FIELD>) for every field; explicit overrides win."""
    return load_from_env(CellSettings, environ_prefixes, **overrides)
