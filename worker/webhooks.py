"""Webhook delivery, as the worker runs it: fan events out to the endpoints that want them, then attempt the due
deliveries (signed, bounded in time and in what is read back), recording success or the next retry."""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from dataclasses import dataclass

import asyncpg
import httpcore
import httpx

from cell.ledger.webhooks import retry_delay_s, signature
from cell.service.events import webhook_body
from cell.store import events as store_events
from cell.store import webhooks as store
from cell.store.db import listening
from ledger_common.outbound import (
    CheckedBackend,
    OutboundPolicy,
    RefusedUrl,
    Resolver,
    check_shape,
    loggable,
    resolve,
)
from ledger_common.pacing import AsyncPacer
from worker import metrics
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)
USER_AGENT = "cellledger-webhooks/1"
FAN_OUT_ENDPOINTS_MAX = 100
FAN_OUT_ROUNDS_MAX = 10


@dataclass
class Attempt:
    ok: bool
    status_code: int | None = None
    error: str = ""


@dataclass
class Outcome:
    fanned_out: int = 0
    succeeded: int = 0
    failed_attempts: int = 0


def policy_of(settings: WorkerSettings) -> OutboundPolicy:
    return OutboundPolicy(allow_http_loopback=settings.webhook_allow_http_loopback,
                          allow_private_addresses=settings.webhook_allow_private_addresses)


@functools.cache
def _tls() -> ssl.SSLContext:
    """The certificate checks every client of this process shares (httpx's defaults, the environment ignored):
    building them reads the CA bundle, ~30 ms of CPU, which a client per delivery task paid every few seconds."""
    return httpx.create_ssl_context(trust_env=False)


def http_client(settings: WorkerSettings, resolver: Resolver = resolve) -> httpx.AsyncClient:
    """Redirects are not followed (a 3xx is a failed attempt); no proxy from the environment (it would call the
    address for us, past the address check). Each connection resolves its host once and connects only to the
    addresses the policy allows (CheckedBackend, swapped into httpx's transport: httpx 0.28 takes no backend)."""
    limits = httpx.Limits(max_connections=settings.webhook_concurrency_max)
    transport = httpx.AsyncHTTPTransport(verify=_tls(), trust_env=False, limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=_tls(), max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
        network_backend=CheckedBackend(policy_of(settings), resolver))
    return httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=settings.webhook_timeout_s,
                             transport=transport)


async def fan_out(pool: asyncpg.Pool, settings: WorkerSettings) -> int:
    """Deliveries made for events positioned since each endpoint's watermark."""
    made = 0
    async with pool.acquire() as conn:
        for endpoint_id in await store.endpoints_behind(conn, FAN_OUT_ENDPOINTS_MAX):
            for _ in range(FAN_OUT_ROUNDS_MAX):
                async with conn.transaction():
                    new, considered = await store.fan_out(conn, endpoint_id, settings.webhook_fan_out_events_max,
                                                          settings.webhook_retry_window_s)
                made += new
                if considered < settings.webhook_fan_out_events_max:
                    break
    return made


async def attempt(client: httpx.AsyncClient, delivery, settings: WorkerSettings) -> Attempt:
    """One POST of the event to the endpoint: 2xx within webhook_timeout_s is success; the body read back is
    bounded (webhook_response_bytes_max) and discarded."""
    body = webhook_body(delivery)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "X-Signature": signature(body, delivery["key"]), "X-Webhook-ID": str(delivery["delivery_id"]),
               "X-Event-Name": delivery["event_name"]}

    async def post() -> Attempt:
        check_shape(delivery["url"], policy_of(settings))  # its addresses: checked as the connection is made
        async with client.stream("POST", delivery["url"], content=body, headers=headers) as response:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= settings.webhook_response_bytes_max:
                    break
            if 200 <= response.status_code < 300:
                return Attempt(True, response.status_code)
            what = "a redirect (not followed)" if 300 <= response.status_code < 400 else "not 2xx"
            return Attempt(False, response.status_code, f"HTTP {response.status_code}: {what}")

    try:
        return await asyncio.wait_for(post(), settings.webhook_timeout_s)
    except RefusedUrl as exc:
        return Attempt(False, None, f"refused: {exc}")
    except (TimeoutError, httpx.TimeoutException):
        return Attempt(False, None, f"no answer within {settings.webhook_timeout_s:g} s")
    except httpx.HTTPError as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {exc}"[:500])


async def deliver_due(pool: asyncpg.Pool, client: httpx.AsyncClient, settings: WorkerSettings) -> Outcome:
    """Claim the due deliveries (at most webhook_batch_max), attempt them concurrently, as many at once as the client
    has connections (webhook_concurrency_max), and record each outcome."""
    outcome = Outcome()
    async with pool.acquire() as conn:
        due = await store.claim(conn, settings.webhook_batch_max, settings.webhook_lease_s)
    if not due:
        return outcome
    connections = asyncio.Semaphore(settings.webhook_concurrency_max)

    async def attempt_with_a_connection(delivery) -> Attempt:
        # An attempt's time to answer starts once it has a connection: receivers that hang on every connection
        # would otherwise spend the others' time while they wait, recorded as their receivers' failure to answer.
        async with connections:
            return await attempt(client, delivery, settings)

    attempts = await asyncio.gather(*(attempt_with_a_connection(d) for d in due))
    async with pool.acquire() as conn:
        for delivery, result in zip(due, attempts):
            if result.ok:
                await store.delivered(conn, delivery["delivery_id"], result.status_code)
                outcome.succeeded += 1
                metrics.WEBHOOK_ATTEMPTS.labels("succeeded").inc()
                continue
            delay = retry_delay_s(delivery["attempts"] + 1, settings.webhook_backoff_base_s,
                                  settings.webhook_backoff_cap_s)
            status = await store.attempt_failed(conn, delivery["delivery_id"], result.status_code, result.error, delay)
            outcome.failed_attempts += 1
            metrics.WEBHOOK_ATTEMPTS.labels("failed" if status == "failed" else "retrying").inc()
            if status == "failed":
                log.warning("webhook delivery %s to %s failed for good: %s", delivery["delivery_id"],
                            loggable(delivery["url"]), result.error)
    return outcome


async def deliver_for(pool: asyncpg.Pool, settings: WorkerSettings, duration_s: float,
                      pacer: AsyncPacer | None = None) -> Outcome:
    """Fan out and deliver for about duration_s (one Celery task's run). Idle, it listens for events positioned (a
    round starts at once, webhook_poll_s after the last at the most) and polls too, as `pacer` says (by default
    every webhook_poll_s, backing off to webhook_poll_idle_s while rounds find nothing: a retry that fell due is
    attempted within that)."""
    total = Outcome()
    deadline = time.monotonic() + duration_s
    pacer = pacer or AsyncPacer(settings.webhook_poll_s, settings.webhook_poll_idle_s)

    def positioned(*_notification) -> None:
        pacer.nudge()

    async with http_client(settings) as client, listening(pool, store_events.POSITIONED_CHANNEL, positioned):
        while True:
            fanned_out = await fan_out(pool, settings)
            round_ = await deliver_due(pool, client, settings)
            total.fanned_out += fanned_out
            total.succeeded += round_.succeeded
            total.failed_attempts += round_.failed_attempts
            if time.monotonic() >= deadline:
                return total
            if round_.succeeded or round_.failed_attempts:
                pacer.after(True)
                continue
            await pacer.wait(time.monotonic(), bool(fanned_out), until=deadline)
