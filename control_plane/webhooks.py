"""Operator use cases of a tenant's webhooks (`ledgerctl webhooks`): the cell's own webhook use cases, run on the
tenant's cell database, audited in the catalog."""

from __future__ import annotations

import uuid

import asyncpg
import msgspec

from cell.ledger.commands import WebhookEndpointCreate
from cell.service import views
from cell.service import webhooks as cell_webhooks
from control_plane import catalog
from control_plane.errors import LedgerctlError
from control_plane.operations import on_tenant_cell
from control_plane.settings import ControlPlaneSettings


def _plain(view: msgspec.Struct) -> dict:
    return msgspec.to_builtins(view)


def _id(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise LedgerctlError("invalid_arguments", f"{what} must be an id, not {value!r}") from exc


async def _on_cell(conn: asyncpg.Connection, tenant_id: str, work, settings: ControlPlaneSettings | None = None):
    """`work` on the tenant's cell; a change (with `settings`) waits out a move's freeze (on_tenant_cell)."""
    async def checked(cell_conn):
        try:
            return await work(cell_conn)
        except msgspec.ValidationError as exc:
            raise LedgerctlError("invalid_arguments", str(exc)) from exc

    return await on_tenant_cell(conn, tenant_id, checked, settings.tenant_frozen_wait_s if settings else 0.0)


async def add(conn: asyncpg.Connection, settings: ControlPlaneSettings, tenant_id: str, url: str,
              event_names: list[str], description: str | None) -> dict:
    async def work(cell_conn):
        cmd = msgspec.convert({"url": url, "event_names": event_names, "description": description},
                              WebhookEndpointCreate)
        return await cell_webhooks.create_endpoint(cell_conn, tenant_id, cmd, policy=settings.outbound,
                                                   endpoints_max=settings.webhook_endpoints_max)

    endpoint = await _on_cell(conn, tenant_id, work, settings)
    await catalog.audit(conn, settings.actor, "webhooks.add", f"tenant:{tenant_id}",
                        {"endpoint_id": str(endpoint.id), "url": url, "event_names": endpoint.event_names})
    return _plain(endpoint)


async def list_endpoints(conn: asyncpg.Connection, tenant_id: str) -> list[dict]:
    rows = await _on_cell(conn, tenant_id, lambda c: cell_webhooks.list_endpoints(c, tenant_id))
    return [_plain(views.webhook_endpoint(r)) for r in rows]


async def remove(conn: asyncpg.Connection, settings: ControlPlaneSettings, tenant_id: str, endpoint_id: str) -> dict:
    eid = _id(endpoint_id, "the endpoint")

    async def work(cell_conn):
        endpoint = await cell_webhooks.get_endpoint(cell_conn, tenant_id, eid)
        await cell_webhooks.delete_endpoint(cell_conn, tenant_id, eid)
        return endpoint

    endpoint = await _on_cell(conn, tenant_id, work, settings)
    await catalog.audit(conn, settings.actor, "webhooks.remove", f"tenant:{tenant_id}", {"endpoint_id": endpoint_id})
    return _plain(endpoint)


async def rotate_key(conn: asyncpg.Connection, settings: ControlPlaneSettings, tenant_id: str,
                     endpoint_id: str) -> dict:
    eid = _id(endpoint_id, "the endpoint")
    endpoint = await _on_cell(conn, tenant_id, lambda c: cell_webhooks.rotate_key(c, tenant_id, eid), settings)
    await catalog.audit(conn, settings.actor, "webhooks.rotate_key", f"tenant:{tenant_id}",
                        {"endpoint_id": endpoint_id})
    return _plain(endpoint)


async def deliveries(conn: asyncpg.Connection, tenant_id: str, status: str | None, endpoint_id: str | None,
                     limit: int) -> list[dict]:
    eid = _id(endpoint_id, "the endpoint") if endpoint_id else None
    rows = await _on_cell(conn, tenant_id, lambda c: cell_webhooks.list_deliveries(
        c, tenant_id, endpoint_id=eid, status=status, limit=limit))
    return [_plain(views.webhook_delivery(r)) for r in rows]


async def redeliver(conn: asyncpg.Connection, settings: ControlPlaneSettings, tenant_id: str,
                    delivery_id: str | None, endpoint_id: str | None) -> dict:
    """One delivery again, or (no id) every failed one of the tenant (of one endpoint)."""
    window = settings.webhook_retry_window_s
    if delivery_id is not None:
        did = _id(delivery_id, "the delivery")
        delivery = await _on_cell(conn, tenant_id, lambda c: cell_webhooks.redeliver(c, tenant_id, did,
                                                                                      retry_window_s=window), settings)
        result = {"redelivered": 1, "delivery": _plain(delivery)}
    else:
        eid = _id(endpoint_id, "the endpoint") if endpoint_id else None
        count = await _on_cell(conn, tenant_id, lambda c: cell_webhooks.redeliver_failed(
            c, tenant_id, endpoint_id=eid, retry_window_s=window), settings)
        result = {"redelivered": count}
    await catalog.audit(conn, settings.actor, "webhooks.redeliver", f"tenant:{tenant_id}",
                        {"delivery_id": delivery_id, "endpoint_id": endpoint_id, "count": result["redelivered"]})
    return result
