"""/api/ping: the SDK's check that credentials and headers get through (`client.ping()`)."""

from __future__ import annotations

from litestar import Request, Response, get

from cell.api import http
from cell.api.openapi import documented
from cell.service.views import Ping


@get("/api/ping", operation_class=documented(response=Ping))
async def ping(request: Request) -> Response:
    """Answered past the key check every /api/ path has (cell/api/auth.py): `{"ping": "pong"}`."""
    return http.json(Ping(ping="pong"))


routes = [ping]
