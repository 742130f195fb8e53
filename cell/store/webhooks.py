"""Webhook endpoints' and deliveries' SQL (sql/webhooks.sql): registration, fan-out of events, claims, outcomes."""

from __future__ import annotations

import uuid

import asyncpg

from cell.store.filters import Where
from cell.store.queries import Q


async def insert_endpoint(conn, endpoint_id: uuid.UUID, tenant_id: str, *, url: str, event_names: list[str],
                          description: str | None, metadata: dict, key: str) -> asyncpg.Record:
    return await conn.fetchrow(Q["insert_webhook_endpoint"], endpoint_id, tenant_id, url, event_names, description,
                               metadata, key)


async def lock_and_count_endpoints(conn, tenant_id: str) -> int:
    """The tenant's endpoints, counted once its registrations in flight have committed (the lock is held to the end of
    the caller's transaction: the registration that counts is the only one until then)."""
    await conn.execute(Q["lock_webhook_endpoints"], tenant_id)
    return await conn.fetchval(Q["count_webhook_endpoints"], tenant_id)


async def fetch_endpoint(conn, tenant_id: str, endpoint_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["fetch_webhook_endpoint"], tenant_id, endpoint_id)


async def list_endpoints(conn, tenant_id: str, after_seq: int, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(Q["list_webhook_endpoints"], tenant_id, after_seq, limit)


async def update_endpoint(conn, tenant_id: str, endpoint_id: uuid.UUID, *, url: str | None,
                          event_names: list[str] | None, description_set: bool, description: str | None,
                          metadata: dict | None, active: bool | None) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["update_webhook_endpoint"], tenant_id, endpoint_id, url, event_names,
                               description_set, description, metadata, active)


async def rotate_key(conn, tenant_id: str, endpoint_id: uuid.UUID, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["rotate_webhook_key"], tenant_id, endpoint_id, key)


async def delete_endpoint(conn, tenant_id: str, endpoint_id: uuid.UUID) -> bool:
    return await conn.fetchval(Q["delete_webhook_endpoint"], tenant_id, endpoint_id) is not None


async def endpoints_behind(conn, limit: int) -> list[uuid.UUID]:
    return [r["id"] for r in await conn.fetch(Q["webhook_endpoints_behind"], limit)]


async def fan_out(conn, endpoint_id: uuid.UUID, events_max: int, retry_window_s: float) -> tuple[int, int]:
    """(deliveries made, events considered) for one endpoint's next events. The transaction (the caller's, or one of
    its own) holds the tenant's deliveries lock to its end (lock_webhook_deliveries: seq order is commit order)."""
    async with conn.transaction():
        await conn.execute(Q["lock_webhook_deliveries"], endpoint_id)
        row = await conn.fetchrow(Q["webhook_fan_out"], endpoint_id, events_max, float(retry_window_s))
    return row["made"], row["considered"]


async def claim(conn, limit: int, lease_s: float) -> list[asyncpg.Record]:
    return await conn.fetch(Q["claim_webhook_deliveries"], limit, float(lease_s))


async def delivered(conn, delivery_id: uuid.UUID, status_code: int) -> None:
    await conn.execute(Q["webhook_delivered"], delivery_id, status_code)


async def attempt_failed(conn, delivery_id: uuid.UUID, status_code: int | None, error: str,
                         retry_in_s: float) -> str | None:
    return await conn.fetchval(Q["webhook_attempt_failed"], delivery_id, status_code, error, float(retry_in_s))


async def list_deliveries(conn, tenant_id: str, *, endpoint_id: uuid.UUID | None, status: str | None,
                          after_seq: int, limit: int) -> list[asyncpg.Record]:
    """A page of deliveries in seq order with their endpoint's url, and whether each is held (a pending one its
    endpoint's pause, or its tenant's move out of this cell, keeps from any attempt: migration 0228; or an earlier
    pending delivery of its entity at its endpoint: 0229). Failed ones by their own index
    (webhook_deliveries_failed, 0190); as `$n IS NULL OR status = $n` a generic plan could not take it."""
    w = Where(tenant_id)
    if endpoint_id is not None:
        w.add("d.endpoint_id = {}", endpoint_id)
    if status is not None:  # named in the text, not bound: a partial index serves only a query that names its value
        if not status.isalpha():
            raise ValueError(f"not a delivery status: {status!r}")
        w.clauses.append(f"d.status = '{status}'")
    w.add("d.seq > {}", after_seq)
    limit_ref = w.bind(limit)
    return await conn.fetch("SELECT d.*, w.url, d.next_attempt_at >= '5000-01-01 00:00:00+00' AS held"
                            " FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id "
                            f"WHERE d.tenant_id = $1{w.sql()} ORDER BY d.seq LIMIT {limit_ref}", *w.args)


async def fetch_delivery(conn, tenant_id: str, delivery_id: uuid.UUID) -> asyncpg.Record | None:
    """A delivery's endpoint_id and seq (list_deliveries reads it whole)."""
    return await conn.fetchrow(Q["fetch_webhook_delivery"], tenant_id, delivery_id)


async def redeliver(conn, tenant_id: str, delivery_id: uuid.UUID, retry_window_s: float) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["redeliver_webhook"], tenant_id, delivery_id, float(retry_window_s))


async def redeliver_failed(conn, tenant_id: str, endpoint_id: uuid.UUID | None, retry_window_s: float) -> int:
    return len(await conn.fetch(Q["redeliver_failed_webhooks"], tenant_id, endpoint_id, float(retry_window_s)))
