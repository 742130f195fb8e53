"""Small helpers every controller uses: the context, the tenant, strict bodies, JSON and page responses."""

from __future__ import annotations

import msgspec
from litestar import Request, Response

from cell.api.params import Query
from cell.ledger.models import IdemKey
from cell.service.common import Page
from cell.service.context import CellContext
from cell.service.idempotency import idempotency_key

JSON = "application/json"
_encoder = msgspec.json.Encoder()


def context(request: Request) -> CellContext:
    return request.app.state.ctx


def tenant(request: Request) -> str:
    return request.scope["state"]["tenant_id"]


def query(request: Request) -> Query:
    return Query(list(request.query_params.multi_items()))


def decode(body: bytes, type_: type):
    """Strict JSON decoding; raises msgspec.ValidationError / DecodeError (mapped to 400 by problems.py)."""
    return msgspec.json.decode(body or b"{}", type=type_, strict=True)


async def body_of(request: Request, type_):
    raw = await request.body()
    return raw, decode(raw, type_)


def idem_of(request: Request, raw: bytes) -> IdemKey | None:
    ctx = context(request)
    return idempotency_key(request.headers.get("idempotency-key"), request.method, request.url.path, raw,
                           ctx.settings.idempotency_key_length_max)


def json(answer, status: int = 200) -> Response:
    return Response(_encoder.encode(answer), status_code=status, media_type=JSON)


def created(answer) -> Response:
    return json(answer, 201)


def page(p: Page) -> Response:
    headers = {"X-After-Cursor": p.next_cursor} if p.next_cursor else {}
    return Response(_encoder.encode(p.items), media_type=JSON, headers=headers)


def paging(request: Request, q: Query) -> tuple[int, str | None]:
    s = context(request).settings
    return q.take_int("per_page", 1, s.per_page_max, s.per_page_default), q.take("after_cursor")
