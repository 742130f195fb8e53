"""All wiring of the cell's HTTP API in one place: routes, auth, problems, health, lifespan (with the metrics
listener on its own port and the sweeper)."""

from __future__ import annotations

import asyncio
import gc
import logging

import asyncpg
from litestar import Litestar, Request, Response, get
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig

from cell.api import (
    accounts,
    bulk,
    categories,
    entries,
    events,
    ledgers,
    metrics_server,
    monitors,
    ping,
    problems,
    settlements,
    statements,
    transactions,
    webhooks,
)
from cell.api.auth import AuthMiddleware
from cell.api.fast import FastPath
from cell.api.metrics import RequestMetrics
from cell.api.options import options_for
from cell.api.server import HttpBounds
from cell.service import sweeper
from cell.service.events import run_sequencer, sequencer_pacer
from cell.service.context import AccountCache, CellContext
from cell.service.nudge import make_nudger, queue_gauges
from cell.service.tenants import KeyCache, record_key_cache_ttl
from cell.settings import CellSettings
from cell.store.db import INDEX_PLANS, close_idle, create_pool, session_bounds
from cell.store.migrate import expected, migrate, pending_migrations
from ledger_common.server_urls import url_refusals_redacted

log = logging.getLogger("cell")
DATABASE_URL_SETTING = "CELL_DATABASE_URL (or LEDGER_DATABASE_URL)"


@get("/healthz", include_in_schema=False)
async def healthz() -> dict:
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> Response:
    ctx: CellContext = request.app.state.ctx
    if request.app.state.draining:  # stopping (cell.api.serve): out of the Service at once
        return problems.problem(503, "not_ready", "shutting down: finishing the requests in flight")
    try:
        async with request.app.state.background_pool.acquire(timeout=2) as conn:
            pending = await pending_migrations(conn, files=request.app.state.schema_files)
            gauges = await queue_gauges(conn, ctx.settings.unapplied_age_max_s)
    except Exception as exc:  # readiness reports any failure as not ready
        return problems.problem(503, "not_ready", f"database unreachable: {exc.__class__.__name__}")
    if pending:
        return problems.problem(503, "not_ready", f"migrations pending: {', '.join(pending)}")
    # A breached sweeper bound stays 200: this process still takes postings (and sweeps); taking every API
    # process out of rotation would turn late balances into an outage. It is an alert, carried here and in
    # ledger_unapplied_age_breach, and `ledgerctl verify` exits 3 on it.
    return Response({"status": "ready", "cell": ctx.settings.name,
                     "unapplied_age_s": round(gauges["oldest_unapplied_age_s"], 3),
                     "unapplied_age_max_s": gauges["unapplied_age_max_s"],
                     "unapplied_age_breach": gauges["unapplied_age_breach"]})


GC_YOUNG_OBJECTS_MAX = 10_000  # Python's default is 700: a young collection every request or two
IDLE_CLOSE_S = 300.0  # a requests' connection above db_pool_min idle 5-10 minutes is closed (asyncpg's default: 5)


def settle_garbage_collector() -> None:
    """The app, its modules, pools and caches live as long as the process: frozen out of the cyclic collector's
    traversals, which, with Python's default thresholds, took about 8% of the cell's CPU under load (perf)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_OBJECTS_MAX, *gc.get_threshold()[1:])


def create_app(settings: CellSettings, *, run_migrations: bool = True) -> Litestar:
    async def startup(app: Litestar) -> None:
        app.state.schema_files = expected()  # the code's migrations and routines, read once: /readyz checks them
        if run_migrations:
            # As the login role (it owns the schema); the pool then runs as the restricted role.
            with url_refusals_redacted(DATABASE_URL_SETTING):
                conn = await asyncpg.connect(settings.database_url)
            try:
                applied = await migrate(conn)
            finally:
                await conn.close()
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
        pool = await create_pool(
            settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max, role=settings.db_role,
            connect_timeout_s=settings.db_acquire_s_max, idle_close_s=0, url_setting=DATABASE_URL_SETTING,
            server_settings={**session_bounds(idle_in_transaction_ms_max=settings.idle_in_transaction_ms_max,
                                              statement_ms_max=settings.statement_ms_max,
                                              lock_wait_ms_max=settings.lock_wait_ms_max), **INDEX_PLANS})
        # Cross-tenant work of this process, apart from the requests' pool (row-level security, migration 0110).
        background = await create_pool(
            settings.database_url, min_size=1, max_size=settings.db_background_pool_max,
            role=settings.db_background_role, connect_timeout_s=settings.db_acquire_s_max,
            url_setting=DATABASE_URL_SETTING,
            server_settings={**session_bounds(idle_in_transaction_ms_max=settings.idle_in_transaction_ms_max,
                                              statement_ms_max=settings.statement_ms_max,
                                              lock_wait_ms_max=settings.lock_wait_ms_max), **INDEX_PLANS})
        app.state.background_pool = background
        if settings.posting_mode == "hybrid" and not settings.sqs_queue_url:
            log.warning("hybrid posting mode without CELL_SQS_QUEUE_URL: queued effects wait for a worker's sweeper")
        pacer = app.state.sequencer_pacer = sequencer_pacer(settings) if settings.events_sequence_interval_s > 0 else None
        keys = KeyCache(settings.api_key_cache_ttl_s)
        await record_key_cache_ttl(background, keys)  # before any key is remembered: what a move off the cell waits
        app.state.ctx = CellContext(settings=settings, pool=pool, cache=AccountCache(settings.account_cache_size_max),
                                    keys=keys, nudger=make_nudger(settings), after_run=pacer.nudge if pacer else None)
        app.state.metrics_server = await metrics_server.start(settings, background)
        # The requests' pool closes its idle connections in one pass a while, not with a timer per release.
        app.state.idle_closer = asyncio.get_running_loop().create_task(close_idle(pool, IDLE_CLOSE_S))
        app.state.sweeper = None
        if settings.sweep_interval_s > 0:
            app.state.sweeper = asyncio.get_running_loop().create_task(sweeper.run(background, settings))
        app.state.sequencer = None
        if pacer is not None:
            app.state.sequencer = asyncio.get_running_loop().create_task(run_sequencer(background, settings, pacer))
        settle_garbage_collector()

    async def shutdown(app: Litestar) -> None:
        ctx: CellContext | None = getattr(app.state, "ctx", None)
        if ctx is None:
            return
        for name in ("sweeper", "sequencer", "idle_closer"):
            task: asyncio.Task | None = getattr(app.state, name, None)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        server: asyncio.Server | None = getattr(app.state, "metrics_server", None)
        if server is not None:
            server.close()
        await ctx.nudger.close()
        await ctx.pool.close()
        await app.state.background_pool.close()

    api_routes = [*ledgers.routes, *accounts.routes, *categories.routes, *transactions.routes, *entries.routes,
                  *events.routes, *monitors.routes, *statements.routes, *settlements.routes, *webhooks.routes,
                  *bulk.routes, *ping.routes]
    app = Litestar(
        route_handlers=[options_for(sorted({path for h in api_routes for path in h.paths})), *api_routes,
                        healthz, readyz],
        on_startup=[startup],
        on_shutdown=[shutdown],
        middleware=[AuthMiddleware, DefineMiddleware(RequestMetrics, cell=settings.name)],
        exception_handlers=problems.HANDLERS,
        request_max_body_size=settings.body_bytes_max,
        openapi_config=OpenAPIConfig(title="Cell ledger API", version="0.1.0", path="/schema"),
        logging_config=None,
    )
    app.state.http_bounds = HttpBounds.of(settings)  # read by the server's protocol (cell.api.server)
    # Read by the server at SIGTERM (cell.api.serve): its drain's bound, and draining set (/readyz then 503).
    app.state.shutdown_drain_s = settings.shutdown_drain_s
    app.state.draining = False
    if settings.fast_path:
        app.asgi_handler = FastPath(app, settings.name)
    return app
