"""The worker's typed settings, read from the environment once at start-up (WORKER_, then LEDGER_ prefixes)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlparse

import msgspec

from cell.store.sweep import (
    GROUP_SIZE_MAX_DEFAULT,
    SWEEP_ACCOUNTS_MAX_DEFAULT,
    SWEEP_AFTER_S_DEFAULT,
    SWEEP_INTERVAL_S_DEFAULT,
    SWEEP_LOCK_TIMEOUT_MS_DEFAULT,
    unapplied_age_max_s,
)
from cell.ledger.webhooks import WEBHOOK_RETRY_WINDOW_S_DEFAULT
from ledger_common.settings import load_from_env


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True):
    cell_name: str = "cell-1"
    database_url: str = ""
    # Cross-tenant by design (batched apply, sweeper, sequencer, sealer, bulk, webhooks): ledger_app's grants, and
    # row-level security lets it see every tenant (cell/store/migrations/0110_row_level_security.sql).
    db_role: str = "ledger_worker"
    broker_url: str = "redis://127.0.0.1:6379/0"
    # Empty endpoint: real SQS through boto3's usual credential chain. Set: an SQS-compatible endpoint
    # (moto in server mode for `make run` and tests), where the worker creates the queue when missing.
    sqs_endpoint_url: str = ""
    sqs_queue_url: str = ""
    sqs_region: str = "us-east-1"
    sqs_timeout_s: float = 5.0
    # Draining: a batch ends at batch_size_max messages or batch_wait_ms_max after its first message. 0: the
    # batch is what one receive returns (the cells already coalesce nudges over sqs_send_buffer_ms_max, and
    # what arrives while a batch is applied waits for the next receive): the fewest SQS calls.
    batch_size_max: int = 100
    batch_wait_ms_max: int = 0
    # Under load, a drain receives at most once every receive_every_ms_min: after a batch that emptied the
    # queue (fewer than batch_size_max messages), the next receive waits out the rest of that interval and then
    # takes, in one call, every nudge that came meanwhile. An idle queue's first nudge is still taken by the long
    # poll at once. 0: receive again at once (a call per nudge under steady load). It adds at most this much to
    # the apply lag.
    receive_every_ms_min: int = 250
    long_poll_s_max: int = 5  # SQS allows 0-20 s
    visibility_timeout_s: int = 30  # a message a crashed worker held comes back after this
    group_size_max: int = GROUP_SIZE_MAX_DEFAULT  # accounts per apply transaction: bounds lock hold time and statement size
    apply_concurrency_max: int = 2  # groups of one batch applied at once (distinct accounts, no deadlock)
    drain_run_s: float = 5.0  # one drain task's length (a warm shutdown waits for it); beat starts
    # `drainers` of them every drain_run_s
    drainers: int = 1
    # Sweeping: nothing stays unapplied longer than sweep_after_s + 2 * sweep_every_s. Every worker process
    # sweeps in a thread of its own every sweep_every_s (no Redis, SQS or beat needed).
    sweep_after_s: float = SWEEP_AFTER_S_DEFAULT
    sweep_every_s: float = SWEEP_INTERVAL_S_DEFAULT
    sweep_accounts_max: int = SWEEP_ACCOUNTS_MAX_DEFAULT  # per sweep run; the next run continues
    sweep_lock_timeout_ms: int = SWEEP_LOCK_TIMEOUT_MS_DEFAULT
    # Bounds on every session of the worker (server settings of its connections): a worker stopped inside
    # its apply transaction (SIGSTOP, a GC pause, a hung host) loses its balance-row locks after
    # idle_in_transaction_ms_max; a statement runs at most statement_ms_max; a lock wait at most lock_wait_ms_max.
    idle_in_transaction_ms_max: int = 5_000
    statement_ms_max: int = 60_000
    lock_wait_ms_max: int = 2_000
    # Broker (Redis) reconnection: retried forever, never more than broker_retry_s_max apart.
    broker_retry_s_max: float = 2.0
    # The events sequencer (worker.app.start_sequencer): every events_sequence_interval_s while it finds events or
    # this process writes some, backing off to every events_sequence_idle_s while idle (as the cell API's does).
    events_sequence_interval_s: float = 0.2
    events_sequence_idle_s: float = 1.0
    verify_every_s: float = 300.0  # 0 disables the periodic verifier
    # The audit chain (cell/store/audit.py): every worker process runs a sealer thread every audit_seal_every_s
    # (one seals at a time; 0: no sealing, the benchmark's baseline), at most audit_seal_batch_max rows per
    # transaction. Every audit_anchor_every_s each tenant's chain head is published outside the cell: to the
    # control plane's database (audit_anchor_database_url: the catalog's URL) and/or a write-once directory
    # (audit_anchor_dir: one file per anchor, never replaced; on one machine a local directory). Production:
    # an S3 bucket with Object Lock (compliance mode, retention at least the audit period) mounted there with
    # Mountpoint for Amazon S3, which only creates new objects, as anchors are written; or anchors in the catalog
    # only, whose role grants the workers INSERT on audit_anchors and nothing else.
    audit_seal_every_s: float = 1.0
    audit_seal_batch_max: int = 5000
    audit_anchor_every_s: float = 10.0
    audit_anchor_database_url: str = ""
    audit_anchor_dir: str = ""
    concurrency: int = 5  # Celery threads: drain(s) + webhooks + bulk + sweeper + verifier
    db_pool_max: int = 4  # per Celery thread; >= 2 (webhooks and bulk listen on one)
    metrics_port: int = 0  # 0: no Prometheus endpoint
    # Loopback by default: never on a public interface; a pod sets its own address (or 0.0.0.0) to be scraped.
    metrics_host: str = "127.0.0.1"
    log_level: str = "INFO"
    beat: bool = True  # exactly one worker per cell runs the beat schedule
    # Webhooks (worker/webhooks.py): one task fans events out and delivers for webhook_run_s, started by beat
    # that often. An attempt is a success on a 2xx within webhook_timeout_s; failures are retried after
    # base * 2^(n-1) (at most cap, jittered down to half) until webhook_retry_window_s after the delivery was made
    # (the event's fan-out to the endpoint: a paused endpoint's deliveries are made when it is active again), then
    # failed. URLs as ledger_common/outbound.py allows (LEDGER_WEBHOOK_ALLOW_* shared with the cell API).
    # Idle, a deliverer listens for events positioned (a round at once, webhook_poll_s after the last at the most)
    # and polls too: every webhook_poll_s, backing off to webhook_poll_idle_s while it finds nothing to do (a retry
    # that fell due is attempted within that).
    webhook_run_s: float = 5.0
    webhook_poll_s: float = 0.5
    webhook_poll_idle_s: float = 1.0
    webhook_timeout_s: float = 5.0
    webhook_response_bytes_max: int = 65_536
    webhook_batch_max: int = 50
    webhook_concurrency_max: int = 16
    webhook_lease_s: float = 30.0
    webhook_fan_out_events_max: int = 1000
    webhook_backoff_base_s: float = 10.0
    webhook_backoff_cap_s: float = 3600.0
    webhook_retry_window_s: float = WEBHOOK_RETRY_WINDOW_S_DEFAULT
    webhook_allow_http_loopback: bool = False
    webhook_allow_private_addresses: bool = False
    # Bulk requests (worker/bulk.py): one task processes open requests for bulk_run_s (beat starts one that
    # often), new transactions bulk_chunk_size to a database transaction; a request's claim lasts bulk_lease_s
    # past its last wave of chunks (a worker killed mid-request leaves it to another after that). posting_mode must be
    # the cell's (LEDGER_POSTING_MODE sets both).
    posting_mode: Literal["hybrid", "sync"] = "hybrid"
    bulk_run_s: float = 5.0
    # Waiting for a request, a worker listens for new ones (claimed at once, bulk_poll_s after its last claim at the
    # most) and polls too: every bulk_poll_s, backing off to bulk_poll_idle_s while it finds none (a request whose
    # claim lapsed is taken within that).
    bulk_poll_s: float = 0.25
    bulk_poll_idle_s: float = 1.0
    bulk_chunk_size: int = 100
    bulk_chunks_at_once: int = 3  # written in parallel, each on its own connection (db_pool_max bounds it)
    bulk_lease_s: float = 30.0
    # Every claim of a request is an attempt (a worker that crashed or failed on it has used one): a request claimed
    # again after bulk_attempts_max attempts is ended instead (completed, each resource not applied failed with
    # bulk_attempts_exhausted), so a bug or a persistent fault does not hold it open, retried every lease, forever.
    bulk_attempts_max: int = 5
    # Fault injection for the crash tests (SIGKILL inside these windows); 0 in every real deployment.
    fault_pause_before_commit_s: float = 0.0
    fault_pause_before_delete_s: float = 0.0
    fault_pause_between_bulk_chunks_s: float = 0.0

    @property
    def queue_name(self) -> str:
        """The SQS queue's name: the last segment of its URL, else one per cell."""
        if self.sqs_queue_url:
            return urlparse(self.sqs_queue_url).path.rstrip("/").rsplit("/", 1)[-1]
        return f"ledger-{self.cell_name}"

    @property
    def celery_queue(self) -> str:
        # Cells may share one Redis: each cell's tasks go to its own queue, never to another cell's worker.
        return f"worker.{self.cell_name}.{self.queue_name}"

    @property
    def unapplied_age_max_s(self) -> float:
        """The sweeper's bound as the verifier checks it (one sweep run of slack)."""
        return unapplied_age_max_s(self.sweep_after_s, self.sweep_every_s)


def load_settings(environ: dict[str, str] | None = None, prefixes: tuple[str, ...] = ("WORKER_", "LEDGER_"),
                  **overrides) -> WorkerSettings:
    """Read WORKER_<FIELD> (then LEDGER_<FIELD>) for every field; explicit overrides win."""
    settings = load_from_env(WorkerSettings, prefixes, environ, **overrides)
    _check(settings)
    return settings


def _check(s: WorkerSettings) -> None:
    if not 1 <= s.batch_size_max <= 10_000:
        raise ValueError("batch_size_max must be 1..10000")
    if not 0 <= s.receive_every_ms_min <= 10_000:
        raise ValueError("receive_every_ms_min must be 0..10000")
    if not 0 <= s.long_poll_s_max <= 20:
        raise ValueError("long_poll_s_max must be 0..20 (the SQS limit)")
    if s.group_size_max < 1 or s.apply_concurrency_max < 1 or s.drainers < 0 or s.concurrency < 1:
        raise ValueError("group_size_max, apply_concurrency_max and concurrency must be >= 1")
    if s.audit_seal_every_s < 0 or s.audit_anchor_every_s <= 0 or not 1 <= s.audit_seal_batch_max <= 100_000:
        raise ValueError("audit_seal_every_s must be >= 0, audit_anchor_every_s > 0, audit_seal_batch_max 1..100000")
    if s.webhook_batch_max < 1 or s.webhook_concurrency_max < 1:
        raise ValueError("webhook_batch_max and webhook_concurrency_max must be >= 1")
    # A batch's attempts take up to a timeout per round of webhook_concurrency_max of them: all within the claim's lease
    # (past it, another deliverer claims them again while they are attempted).
    rounds = -(-s.webhook_batch_max // s.webhook_concurrency_max)
    if s.webhook_timeout_s <= 0 or s.webhook_lease_s <= s.webhook_timeout_s * rounds:
        raise ValueError("webhook_timeout_s must be > 0 and webhook_lease_s longer than a batch's attempts take: "
                         "webhook_timeout_s * ceil(webhook_batch_max / webhook_concurrency_max)")
    if s.sweep_after_s <= 0 or s.sweep_every_s <= 0:
        raise ValueError("sweep_after_s and sweep_every_s must be > 0")
    if s.events_sequence_interval_s <= 0 or s.events_sequence_idle_s <= 0:
        raise ValueError("events_sequence_interval_s and events_sequence_idle_s must be > 0")
    if not 1 <= s.bulk_attempts_max <= 100:
        raise ValueError("bulk_attempts_max must be 1..100")
    if s.db_pool_max < 2:  # with one, the deliverer's first statement would wait for its own listening connection
        raise ValueError("db_pool_max must be >= 2: the webhook deliverer and the bulk claimer keep one connection "
                         "listening and work on another")
