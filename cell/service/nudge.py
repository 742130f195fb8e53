"""The posting path's SQS nudge: after a commit, name the accounts left unapplied so a worker applies them soon."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import asyncpg
from prometheus_client import Counter, Gauge

from cell.settings import CellSettings
from cell.store import queue
from ledger_common.nudge import encode_nudges
from ledger_common.sqs import SQS_BATCH_MAX, make_sqs_client

log = logging.getLogger(__name__)

PENDING_ACCOUNTS_MAX = 100_000  # accounts buffered while a send is slow; beyond it nudges drop (swept later)

NUDGES_SENT = Counter("ledger_nudge_messages_sent_total", "SQS nudge messages sent")
NUDGE_FAILURES = Counter(
    "ledger_nudge_send_failures_total",
    "SQS nudge messages that could not be sent (their effects wait for the sweeper)",
)
# Read from the database at scrape time: with several API processes, the most recent reading is the cell's.
UNAPPLIED_EFFECTS = Gauge("ledger_unapplied_effects", "Balance effects waiting to be applied (the async queue)",
                          multiprocess_mode="mostrecent")
OLDEST_UNAPPLIED_AGE = Gauge("ledger_oldest_unapplied_age_seconds", "Age of the oldest unapplied balance effect",
                             multiprocess_mode="mostrecent")
UNAPPLIED_AGE_BOUND = Gauge("ledger_unapplied_age_bound_seconds",
                            "The sweeper's bound: no balance effect may stay unapplied longer",
                            multiprocess_mode="mostrecent")
UNAPPLIED_AGE_BREACH = Gauge("ledger_unapplied_age_breach",
                             "1 when the oldest unapplied balance effect is older than the sweeper's bound",
                             multiprocess_mode="mostrecent")


class Nudger(Protocol):
    async def nudge(self, tenant_id: str, account_ids: list[str]) -> None: ...

    async def close(self) -> None: ...


class NullNudger:
    """Sync mode, or no SQS configured: the sweeper alone applies anything left unapplied."""

    async def nudge(self, tenant_id: str, account_ids: list[str]) -> None:
        return None

    async def close(self) -> None:
        return None


class SqsNudger:
    """Coalesces nudges per tenant and sends them with SendMessageBatch from one sender task: it waits up to
    buffer_ms_max for more postings, sends everything pending in a thread (boto3 is blocking), and whatever
    arrives meanwhile goes in the next call, so the call rate stays bounded however fast postings come.
    Never raises into the posting path: the effects are already committed, so a failed send only delays
    their application until the sweeper runs."""

    def __init__(self, client, queue_url: str, buffer_ms_max: int, *,
                 pending_accounts_max: int = PENDING_ACCOUNTS_MAX) -> None:
        self._client = client
        self._queue_url = queue_url
        self._buffer_s = max(0, buffer_ms_max) / 1000
        self._pending_accounts_max = pending_accounts_max
        self._pending: dict[str, set[str]] = {}
        self._pending_count = 0
        self._wakeup: asyncio.Event | None = None
        self._sender: asyncio.Task | None = None
        self._closed = False

    async def nudge(self, tenant_id: str, account_ids: list[str]) -> None:
        if not account_ids or self._closed:
            return
        if self._pending_count >= self._pending_accounts_max:
            # SQS slow or down and the buffer full: holding more would only grow memory; the sweeper applies.
            NUDGE_FAILURES.inc()
            return
        accounts = self._pending.setdefault(tenant_id, set())
        before = len(accounts)
        accounts.update(str(a) for a in account_ids)
        self._pending_count += len(accounts) - before
        if self._sender is None:
            self._wakeup = asyncio.Event()
            self._sender = asyncio.get_running_loop().create_task(self._run())
        self._wakeup.set()

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            if self._buffer_s and not self._closed:
                await asyncio.sleep(self._buffer_s)  # let concurrent postings join this call
            self._wakeup.clear()
            pending, self._pending, self._pending_count = self._pending, {}, 0
            if pending:
                await self._send([b for tenant, accounts in pending.items() for b in encode_nudges(tenant, accounts)])
            if self._closed and not self._pending:
                return

    async def _send(self, bodies: list[str]) -> None:
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

    async def close(self) -> None:
        """Send everything pending and stop (bounded by the client's timeouts)."""
        self._closed = True
        if self._sender is not None:
            self._wakeup.set()
            await asyncio.gather(self._sender, return_exceptions=True)


def make_nudger(settings: CellSettings) -> Nudger:
    """SqsNudger in hybrid mode with a queue URL; NullNudger otherwise (the sweeper still applies)."""
    if settings.posting_mode != "hybrid" or not settings.sqs_queue_url:
        return NullNudger()
    client = make_sqs_client(settings.sqs_endpoint_url, settings.sqs_region)
    return SqsNudger(client, settings.sqs_queue_url, settings.sqs_send_buffer_ms_max)


async def queue_gauges(conn: asyncpg.Connection, unapplied_age_max_s: float | None = None) -> dict:
    """The async queue for /metrics and /readyz: unapplied effects, the age in seconds of the oldest (0 if none)
    and, given the sweeper's bound, whether that age breaches it. Also sets the ledger_unapplied_effects,
    ledger_oldest_unapplied_age_seconds (and ledger_unapplied_age_bound_seconds / _breach) gauges."""
    depth, age = await queue.depth_and_age(conn)
    UNAPPLIED_EFFECTS.set(depth)
    OLDEST_UNAPPLIED_AGE.set(age)
    gauges = {"unapplied_effects": depth, "oldest_unapplied_age_s": age}
    if unapplied_age_max_s is not None:
        breach = age > unapplied_age_max_s
        UNAPPLIED_AGE_BOUND.set(unapplied_age_max_s)
        UNAPPLIED_AGE_BREACH.set(int(breach))
        gauges.update(unapplied_age_max_s=unapplied_age_max_s, unapplied_age_breach=breach)
    return gauges
