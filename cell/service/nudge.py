"""The posting path's SQS nudge: after a commit, name the accounts left unapplied so a worker applies them soon."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import asyncpg
import msgspec
from prometheus_client import Counter, Gauge

from cell.settings import CellSettings
from cell.store.queries import Q

log = logging.getLogger(__name__)

# The wire format read by worker/batching.py (a unit test round-trips one into the other).
NUDGE_VERSION = 1
ACCOUNTS_PER_MESSAGE_MAX = 500  # ~20 KB a message: ten fit SendMessageBatch's 256 KB total
SQS_BATCH_MAX = 10  # entries per SendMessageBatch (an SQS limit)
SENDS_IN_FLIGHT_MAX = 4  # concurrent SendMessageBatch calls (threads); more wait their turn
FLUSHES_QUEUED_MAX = 64  # flushes waiting for a send slot; beyond it (SQS down) nudges are dropped, swept later

NUDGES_SENT = Counter("ledger_nudge_messages_sent_total", "SQS nudge messages sent")
NUDGE_FAILURES = Counter(
    "ledger_nudge_send_failures_total",
    "SQS nudge messages that could not be sent (their effects wait for the sweeper)",
)
UNAPPLIED_EFFECTS = Gauge("ledger_unapplied_effects", "Balance effects waiting to be applied (the async queue)")
OLDEST_UNAPPLIED_AGE = Gauge("ledger_oldest_unapplied_age_seconds", "Age of the oldest unapplied balance effect")


class Nudger(Protocol):
    async def nudge(self, tenant_id: str, account_ids: list[str]) -> None: ...

    async def close(self) -> None: ...


class NullNudger:
    """Sync mode, or no SQS configured: the sweeper alone applies anything left unapplied."""

    async def nudge(self, tenant_id: str, account_ids: list[str]) -> None:
        return None

    async def close(self) -> None:
        return None


class _Nudge(msgspec.Struct, frozen=True):
    v: int
    t: str
    a: list[str]


def encode_nudges(tenant_id: str, account_ids, accounts_per_message_max: int = ACCOUNTS_PER_MESSAGE_MAX) -> list[str]:
    accounts = sorted(set(account_ids))
    return [msgspec.json.encode(_Nudge(NUDGE_VERSION, tenant_id, accounts[i:i + accounts_per_message_max])).decode()
            for i in range(0, len(accounts), accounts_per_message_max)]


class SqsNudger:
    """Buffers nudges for up to buffer_ms_max, coalesces their accounts per tenant, sends them with
    SendMessageBatch in a thread (boto3 is blocking). Never raises into the posting path: the effects are
    already committed, so a failed send only delays their application until the sweeper runs."""

    def __init__(self, client, queue_url: str, buffer_ms_max: int, *,
                 pending_accounts_max: int = ACCOUNTS_PER_MESSAGE_MAX * SQS_BATCH_MAX) -> None:
        self._client = client
        self._queue_url = queue_url
        self._buffer_s = max(0, buffer_ms_max) / 1000
        self._pending_accounts_max = pending_accounts_max
        self._pending: dict[str, set[str]] = {}
        self._pending_count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._in_flight: set[asyncio.Task] = set()
        self._sends = asyncio.Semaphore(SENDS_IN_FLIGHT_MAX)
        self._closed = False

    async def nudge(self, tenant_id: str, account_ids: list[str]) -> None:
        if not account_ids:
            return
        accounts = self._pending.setdefault(tenant_id, set())
        before = len(accounts)
        accounts.update(str(a) for a in account_ids)
        self._pending_count += len(accounts) - before
        if self._closed or self._buffer_s == 0 or self._pending_count >= self._pending_accounts_max:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._buffer_s, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        pending, self._pending, self._pending_count = self._pending, {}, 0
        bodies = [b for tenant, accounts in pending.items() for b in encode_nudges(tenant, accounts)]
        if len(self._in_flight) >= FLUSHES_QUEUED_MAX:
            # SQS is slow or down: holding more would only grow memory; the sweeper applies these.
            NUDGE_FAILURES.inc(len(bodies))
            return
        task = asyncio.get_running_loop().create_task(self._send(bodies))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _send(self, bodies: list[str]) -> None:
        async with self._sends:
            for i in range(0, len(bodies), SQS_BATCH_MAX):
                chunk = bodies[i:i + SQS_BATCH_MAX]
                try:
                    failed = await asyncio.to_thread(self._send_batch, chunk)
                except Exception as exc:  # noqa: BLE001 - SQS down: the sweeper applies these effects later
                    log.warning("SQS nudge of %d messages failed: %s", len(chunk), exc)
                    NUDGE_FAILURES.inc(len(chunk))
                    continue
                NUDGES_SENT.inc(len(chunk) - failed)
                if failed:
                    NUDGE_FAILURES.inc(failed)

    def _send_batch(self, bodies: list[str]) -> int:
        response = self._client.send_message_batch(
            QueueUrl=self._queue_url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)],
        )
        return len(response.get("Failed", []))

    async def flush(self) -> None:
        """Send everything buffered and wait for every send in flight."""
        self._flush()
        if self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        await self.flush()


def make_sqs_client(endpoint_url: str, region: str, timeout_s: float = 2.0):
    import boto3
    import botocore.config

    # Short timeouts and one retry: a send runs off the request path, but close() waits for it.
    config = botocore.config.Config(connect_timeout=timeout_s, read_timeout=timeout_s,
                                    retries={"max_attempts": 2, "mode": "standard"}, max_pool_connections=8)
    kwargs: dict = {"region_name": region, "config": config}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
        if boto3.session.Session().get_credentials() is None:
            # An SQS-compatible endpoint (moto) accepts any credentials.
            kwargs.update(aws_access_key_id="ledger", aws_secret_access_key="ledger")
    return boto3.session.Session().client("sqs", **kwargs)


def make_nudger(settings: CellSettings) -> Nudger:
    """SqsNudger in hybrid mode with a queue URL; NullNudger otherwise (the sweeper still applies)."""
    if settings.posting_mode != "hybrid" or not settings.sqs_queue_url:
        return NullNudger()
    client = make_sqs_client(settings.sqs_endpoint_url, settings.sqs_region)
    return SqsNudger(client, settings.sqs_queue_url, settings.sqs_send_buffer_ms_max)


async def queue_gauges(conn: asyncpg.Connection) -> dict:
    """The async queue for /metrics: unapplied effects, and the age in seconds of the oldest (0 if none).
    Also sets the ledger_unapplied_effects / ledger_oldest_unapplied_age_seconds gauges (default registry)."""
    row = await conn.fetchrow(Q["worker_queue_gauges"])
    UNAPPLIED_EFFECTS.set(row["unapplied_effects"])
    OLDEST_UNAPPLIED_AGE.set(row["oldest_unapplied_age_s"])
    return {"unapplied_effects": int(row["unapplied_effects"]),
            "oldest_unapplied_age_s": float(row["oldest_unapplied_age_s"])}
