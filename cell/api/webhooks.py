"""/api/webhook_endpoints and /api/webhook_deliveries: a tenant's webhook endpoints (Modern Treasury manages them
in its dashboard; here they are an API resource and `ledgerctl webhooks`) and the deliveries of events to them."""

from __future__ import annotations

from litestar import Request, Response, delete, get, patch, post
from litestar.params import FromPath

from cell.api import http
from cell.api.openapi import UUID, documented, query
from cell.ledger.commands import WebhookEndpointCreate, WebhookEndpointUpdate
from cell.service import webhooks
from cell.service.common import parse_uuid
from cell.service.views import WebhookDelivery, WebhookEndpoint


def _settings(request: Request):
    return http.context(request).settings


@post("/api/webhook_endpoints", status_code=201,
      operation_class=documented(WebhookEndpointCreate, WebhookEndpoint, 201))
async def create_endpoint(request: Request) -> Response:
    """Register an endpoint: https to a public address (422 webhook_url_refused otherwise). The answer carries
    `webhook_key`, the X-Signature key, this once (and again to a retry under the same Idempotency-Key)."""
    raw, req = await http.body_of(request, WebhookEndpointCreate)
    s = _settings(request)
    return http.created(await webhooks.create_endpoint_keyed(
        http.context(request), http.tenant(request), req, http.idem_of(request, raw), policy=s.outbound,
        endpoints_max=s.webhook_endpoints_max))


@get("/api/webhook_endpoints", operation_class=documented(response=WebhookEndpoint, many=True))
async def list_endpoints(request: Request) -> Response:
    q = http.query(request)
    per_page, cursor = http.paging(request, q)
    q.done()
    return http.page(await webhooks.endpoints_page(http.context(request), http.tenant(request), after_cursor=cursor,
                                                   per_page=per_page))


@get("/api/webhook_endpoints/{endpoint_id:str}", operation_class=documented(response=WebhookEndpoint))
async def get_endpoint(request: Request, endpoint_id: FromPath[str]) -> Response:
    eid = parse_uuid(endpoint_id, "webhook endpoint")
    return http.json(await http.context(request).run(
        lambda conn: webhooks.get_endpoint(conn, http.tenant(request), eid)))


@patch("/api/webhook_endpoints/{endpoint_id:str}", operation_class=documented(WebhookEndpointUpdate, WebhookEndpoint))
async def update_endpoint(request: Request, endpoint_id: FromPath[str]) -> Response:
    _, req = await http.body_of(request, WebhookEndpointUpdate)
    eid = parse_uuid(endpoint_id, "webhook endpoint")
    s = _settings(request)
    return http.json(await http.context(request).run(lambda conn: webhooks.update_endpoint(
        conn, http.tenant(request), eid, req, policy=s.outbound)))


@post("/api/webhook_endpoints/{endpoint_id:str}/rotate_key", status_code=200,
      operation_class=documented(response=WebhookEndpoint))
async def rotate_key(request: Request, endpoint_id: FromPath[str]) -> Response:
    """A new `webhook_key`, shown this once; every attempt from now on is signed with it."""
    raw = await request.body()
    eid = parse_uuid(endpoint_id, "webhook endpoint")
    return http.json(await webhooks.rotate_key_keyed(http.context(request), http.tenant(request), eid,
                                                     http.idem_of(request, raw)))


@delete("/api/webhook_endpoints/{endpoint_id:str}", status_code=200,
        operation_class=documented(response=WebhookEndpoint))
async def delete_endpoint(request: Request, endpoint_id: FromPath[str]) -> Response:
    """Remove the endpoint and its deliveries; the answer is the endpoint as it was."""
    eid = parse_uuid(endpoint_id, "webhook endpoint")
    tenant = http.tenant(request)

    async def work(conn):
        endpoint = await webhooks.get_endpoint(conn, tenant, eid)
        await webhooks.delete_endpoint(conn, tenant, eid)
        return endpoint

    return http.json(await http.context(request).run(work))


@get("/api/webhook_deliveries", operation_class=documented(response=WebhookDelivery, many=True, parameters=[
    query("endpoint_id", UUID, "The deliveries to this endpoint."),
    query("status", {"type": "string", "enum": list(webhooks.DELIVERY_STATUSES)}, "By status.")]))
async def list_deliveries(request: Request) -> Response:
    q = http.query(request)
    per_page, cursor = http.paging(request, q)
    endpoint_id = q.take_uuid("endpoint_id")
    status = q.take_choice("status", set(webhooks.DELIVERY_STATUSES))
    q.done()
    return http.page(await webhooks.deliveries_page(http.context(request), http.tenant(request), after_cursor=cursor,
                                                    per_page=per_page, endpoint_id=endpoint_id, status=status))


@post("/api/webhook_deliveries/{delivery_id:str}/redeliver", status_code=200,
      operation_class=documented(response=WebhookDelivery))
async def redeliver(request: Request, delivery_id: FromPath[str]) -> Response:
    """Attempt the delivery again now (same X-Webhook-ID), with a fresh retry window."""
    raw = await request.body()
    did = parse_uuid(delivery_id, "webhook delivery")
    return http.json(await webhooks.redeliver_keyed(http.context(request), http.tenant(request), did,
                                                    http.idem_of(request, raw),
                                                    retry_window_s=_settings(request).webhook_retry_window_s))


routes = [create_endpoint, list_endpoints, get_endpoint, update_endpoint, rotate_key, delete_endpoint,
          list_deliveries, redeliver]
