"""Use cases of webhook endpoints (register with a key shown once, read, change, rotate the key, remove) and of
their deliveries (list, redeliver). Each takes a connection first, so that the API (through CellContext.run) and
ledgerctl (on the cell's database) share them."""

from __future__ import annotations

import uuid

import asyncpg
from msgspec import UNSET

from cell.ledger.commands import WebhookEndpointCreate, WebhookEndpointUpdate
from cell.ledger.errors import NotFound, PostingRejected
from cell.ledger.models import IdemKey
from cell.ledger.webhooks import new_key
from cell.service import views
from cell.service.common import Page, merge_metadata, seq_page
from cell.service.context import CellContext
from cell.service.ledgers import create_idempotently, write_idempotently
from cell.store import tenants as store_tenants
from cell.store import webhooks as store
from ledger_common.outbound import OutboundPolicy, RefusedUrl, check_url

DELIVERY_STATUSES = ("pending", "succeeded", "failed")
RESOURCE = "webhook_endpoint"  # an Idempotency-Key's resource type


async def check_endpoint_url(url: str, policy: OutboundPolicy) -> None:
    """A URL the worker will not call is refused when it is registered: 422 webhook_url_refused, with why."""
    try:
        await check_url(url, policy)
    except RefusedUrl as exc:
        raise PostingRejected(f"webhook URL refused: {exc}", "webhook_url_refused") from exc


async def _insert_endpoint(conn: asyncpg.Connection, tenant_id: str, endpoint_id: uuid.UUID,
                           cmd: WebhookEndpointCreate, endpoints_max: int) -> views.WebhookEndpoint:
    """The endpoint written in the caller's transaction (the tenant fenced), its key shown in the answer."""
    if await store.lock_and_count_endpoints(conn, tenant_id) >= endpoints_max:
        raise PostingRejected(f"a tenant has at most {endpoints_max} webhook endpoints", "too_many_endpoints")
    key = new_key()
    row = await store.insert_endpoint(conn, endpoint_id, tenant_id, url=cmd.url,
                                      event_names=sorted(set(cmd.event_names)), description=cmd.description,
                                      metadata=cmd.metadata, key=key)
    return views.webhook_endpoint(row, key)


async def create_endpoint(conn: asyncpg.Connection, tenant_id: str, cmd: WebhookEndpointCreate, *,
                          policy: OutboundPolicy, endpoints_max: int) -> views.WebhookEndpoint:
    """Register one (ledgerctl's, on the cell's database; the API's is create_endpoint_keyed)."""
    await check_endpoint_url(cmd.url, policy)
    async with conn.transaction():
        await store_tenants.fence(conn, tenant_id)
        return await _insert_endpoint(conn, tenant_id, uuid.uuid4(), cmd, endpoints_max)


async def create_endpoint_keyed(ctx: CellContext, tenant_id: str, cmd: WebhookEndpointCreate,
                                idem: IdemKey | None, *, policy: OutboundPolicy,
                                endpoints_max: int) -> views.WebhookEndpoint:
    """Register one through the API: a registration retried under its Idempotency-Key replays the first answer (its
    key too) and registers no second endpoint, which would be sent every event twice."""
    await check_endpoint_url(cmd.url, policy)
    return await create_idempotently(
        ctx, tenant_id, idem, RESOURCE, views.WebhookEndpoint,
        lambda conn, new_id: _insert_endpoint(conn, tenant_id, new_id, cmd, endpoints_max),
        lambda conn, endpoint_id: get_endpoint(conn, tenant_id, endpoint_id))


async def _row(conn: asyncpg.Connection, tenant_id: str, endpoint_id: uuid.UUID):
    row = await store.fetch_endpoint(conn, tenant_id, endpoint_id)
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return row


async def get_endpoint(conn: asyncpg.Connection, tenant_id: str, endpoint_id: uuid.UUID) -> views.WebhookEndpoint:
    return views.webhook_endpoint(await _row(conn, tenant_id, endpoint_id))


async def list_endpoints(conn: asyncpg.Connection, tenant_id: str, *, after_seq: int = 0,
                         limit: int = 1000) -> list[asyncpg.Record]:
    """Rows (with `seq` for the next page); render with views.webhook_endpoint."""
    return await store.list_endpoints(conn, tenant_id, after_seq, limit)


async def update_endpoint(conn: asyncpg.Connection, tenant_id: str, endpoint_id: uuid.UUID,
                          cmd: WebhookEndpointUpdate, *, policy: OutboundPolicy) -> views.WebhookEndpoint:
    if cmd.url is not UNSET:
        await check_endpoint_url(cmd.url, policy)
    async with conn.transaction():
        await store_tenants.fence(conn, tenant_id)
        current = await _row(conn, tenant_id, endpoint_id)
        metadata = merge_metadata(current["metadata"], cmd.metadata)
        row = await store.update_endpoint(
            conn, tenant_id, endpoint_id, url=None if cmd.url is UNSET else cmd.url,
            event_names=None if cmd.event_names is UNSET else sorted(set(cmd.event_names)),
            description_set=cmd.description is not UNSET,
            description=None if cmd.description is UNSET else cmd.description, metadata=metadata,
            active=None if cmd.active is UNSET else cmd.active)
    return views.webhook_endpoint(row)


async def _rotate_key(conn: asyncpg.Connection, tenant_id: str, endpoint_id: uuid.UUID) -> views.WebhookEndpoint:
    """In the caller's transaction (the tenant fenced)."""
    key = new_key()
    row = await store.rotate_key(conn, tenant_id, endpoint_id, key)
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return views.webhook_endpoint(row, key)


async def rotate_key(conn: asyncpg.Connection, tenant_id: str, endpoint_id: uuid.UUID) -> views.WebhookEndpoint:
    """A new key, shown once; every attempt from now on (retries included) is signed with it (ledgerctl's; the API's
    is rotate_key_keyed)."""
    async with conn.transaction():
        await store_tenants.fence(conn, tenant_id)
        return await _rotate_key(conn, tenant_id, endpoint_id)


async def rotate_key_keyed(ctx: CellContext, tenant_id: str, endpoint_id: uuid.UUID,
                           idem: IdemKey | None) -> views.WebhookEndpoint:
    """Through the API: a rotation retried under its Idempotency-Key replays the first answer (the key the endpoint
    was given then), never rotating again to a key nobody was shown."""
    return await write_idempotently(ctx, tenant_id, idem, RESOURCE, endpoint_id, views.WebhookEndpoint,
                                    lambda conn, eid: _rotate_key(conn, tenant_id, eid),
                                    lambda conn, eid: get_endpoint(conn, tenant_id, eid), status=200)


async def delete_endpoint(conn: asyncpg.Connection, tenant_id: str, endpoint_id: uuid.UUID) -> None:
    """The endpoint and its deliveries (pending ones are not attempted any more)."""
    async with conn.transaction():
        await store_tenants.fence(conn, tenant_id)
        deleted = await store.delete_endpoint(conn, tenant_id, endpoint_id)
    if not deleted:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")


async def list_deliveries(conn: asyncpg.Connection, tenant_id: str, *, endpoint_id: uuid.UUID | None = None,
                          status: str | None = None, after_seq: int = 0,
                          limit: int = 100) -> list[asyncpg.Record]:
    """Rows (with `seq`), oldest first; render with views.webhook_delivery."""
    return await store.list_deliveries(conn, tenant_id, endpoint_id=endpoint_id, status=status,
                                       after_seq=after_seq, limit=limit)


async def _delivery(conn: asyncpg.Connection, tenant_id: str, endpoint_id: uuid.UUID,
                    seq: int) -> views.WebhookDelivery:
    rows = await store.list_deliveries(conn, tenant_id, endpoint_id=endpoint_id, status=None, after_seq=seq - 1,
                                       limit=1)
    return views.webhook_delivery(rows[0])


async def _redeliver(conn: asyncpg.Connection, tenant_id: str, delivery_id: uuid.UUID,
                     retry_window_s: float) -> views.WebhookDelivery:
    """In the caller's transaction (the tenant fenced)."""
    row = await store.redeliver(conn, tenant_id, delivery_id, retry_window_s)
    if row is None:
        raise NotFound(f"webhook delivery {delivery_id} not found")
    return await _delivery(conn, tenant_id, row["endpoint_id"], row["seq"])


async def redeliver(conn: asyncpg.Connection, tenant_id: str, delivery_id: uuid.UUID, *,
                    retry_window_s: float) -> views.WebhookDelivery:
    """One delivery pending again now (same X-Webhook-ID), with a fresh retry window (ledgerctl's; the API's is
    redeliver_keyed)."""
    async with conn.transaction():
        await store_tenants.fence(conn, tenant_id)
        return await _redeliver(conn, tenant_id, delivery_id, retry_window_s)


async def redeliver_keyed(ctx: CellContext, tenant_id: str, delivery_id: uuid.UUID, idem: IdemKey | None, *,
                          retry_window_s: float) -> views.WebhookDelivery:
    """Through the API: a redelivery retried under its Idempotency-Key replays the first answer."""
    async def current(conn: asyncpg.Connection, did) -> views.WebhookDelivery:
        row = await store.fetch_delivery(conn, tenant_id, did)
        if row is None:
            raise NotFound(f"webhook delivery {did} not found")
        return await _delivery(conn, tenant_id, row["endpoint_id"], row["seq"])

    return await write_idempotently(ctx, tenant_id, idem, "webhook_delivery", delivery_id, views.WebhookDelivery,
                                    lambda conn, did: _redeliver(conn, tenant_id, did, retry_window_s), current,
                                    status=200)


async def redeliver_failed(conn: asyncpg.Connection, tenant_id: str, *, endpoint_id: uuid.UUID | None = None,
                           retry_window_s: float) -> int:
    """Every failed delivery of the tenant (of one endpoint) pending again now; how many."""
    async with conn.transaction():
        await store_tenants.fence(conn, tenant_id)
        return await store.redeliver_failed(conn, tenant_id, endpoint_id, retry_window_s)


async def endpoints_page(ctx: CellContext, tenant_id: str, *, after_cursor: str | None,
                         per_page: int) -> Page[views.WebhookEndpoint]:
    return await seq_page(ctx, tenant_id, "webhook_endpoints", after_cursor, per_page, views.webhook_endpoint,
                          list_endpoints)


async def deliveries_page(ctx: CellContext, tenant_id: str, *, after_cursor: str | None, per_page: int,
                          endpoint_id: uuid.UUID | None, status: str | None) -> Page[views.WebhookDelivery]:
    return await seq_page(ctx, tenant_id, "webhook_deliveries", after_cursor, per_page, views.webhook_delivery,
                          list_deliveries, endpoint_id=endpoint_id, status=status)
