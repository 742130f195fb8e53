"""All wiring of the cell's HTTP API in one place: routes, auth, problems, metrics, health, lifespan."""

from __future__ import annotations

import logging

import asyncpg
import msgspec
from litestar import Litestar, Request, Response, get
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from cell.api import accounts, entries, ledgers, problems, transactions
from cell.api.auth import AuthMiddleware
from cell.api.metrics import RequestMetrics
from cell.api.options import options_for
from cell.ledger.errors import LedgerError
from cell.service.context import AccountCache, CellContext
from cell.service.nudge import make_nudger, queue_gauges
from cell.service.tenants import KeyCache
from cell.settings import CellSettings
from cell.store.db import create_pool
from cell.store.migrate import migrate, pending_migrations

log = logging.getLogger("cell")


@get("/healthz", include_in_schema=False)
async def healthz() -> dict:
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> Response:
    ctx: CellContext = request.app.state.ctx
    try:
        async with ctx.pool.acquire(timeout=2) as conn:
            pending = await pending_migrations(conn)
    except Exception as exc:  # readiness reports any failure as not ready
        return problems.problem(503, "not_ready", f"database unreachable: {exc.__class__.__name__}")
    if pending:
        return problems.problem(503, "not_ready", f"migrations pending: {', '.join(pending)}")
    return Response({"status": "ready", "cell": ctx.settings.name})


@get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    ctx: CellContext = request.app.state.ctx
    async with ctx.pool.acquire() as conn:
        await queue_gauges(conn)  # the queue's depth and age, read at scrape time
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: CellSettings, *, run_migrations: bool = True) -> Litestar:
    async def startup(app: Litestar) -> None:
        if run_migrations:
            # As the login role (it owns the schema); the pool then runs as the restricted role.
            conn = await asyncpg.connect(settings.database_url)
            try:
                applied = await migrate(conn)
            finally:
                await conn.close()
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
        pool = await create_pool(settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max,
                                 role=settings.db_role)
        if settings.posting_mode == "hybrid" and not settings.sqs_queue_url:
            log.warning("hybrid posting mode without CELL_SQS_QUEUE_URL: queued effects wait for a worker's sweeper")
        app.state.ctx = CellContext(settings=settings, pool=pool, cache=AccountCache(settings.account_cache_size_max),
                                    keys=KeyCache(settings.api_key_cache_ttl_s), nudger=make_nudger(settings))

    async def shutdown(app: Litestar) -> None:
        ctx: CellContext | None = getattr(app.state, "ctx", None)
        if ctx is None:
            return
        await ctx.nudger.close()
        await ctx.pool.close()

    api_routes = [*ledgers.routes, *accounts.routes, *transactions.routes, *entries.routes]
    return Litestar(
        route_handlers=[options_for(sorted({path for h in api_routes for path in h.paths})), *api_routes,
                        healthz, readyz, metrics],
        on_startup=[startup],
        on_shutdown=[shutdown],
        middleware=[AuthMiddleware, DefineMiddleware(RequestMetrics, cell=settings.name)],
        exception_handlers={
            LedgerError: problems.ledger_error_handler,
            msgspec.MsgspecError: problems.decode_error_handler,
            HTTPException: problems.http_error_handler,
            Exception: problems.internal_error_handler,
        },
        request_max_body_size=settings.body_bytes_max,
        openapi_config=OpenAPIConfig(title="Cell ledger API", version="0.1.0", path="/schema"),
        logging_config=None,
    )
