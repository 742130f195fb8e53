"""The control-plane database: connecting, migrating, and the catalog's queries (cells, tenants, audit)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import msgspec

from cell.store.migrate import migrate
from control_plane.errors import EXIT_UNAVAILABLE, LedgerctlError
from ledger_common.server_urls import InvalidServerUrl, url_refusals_redacted
from ledger_common.sql import load_queries

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
Q = load_queries(Path(__file__).parent / "sql")


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=lambda v: msgspec.json.encode(v).decode(),
                              decoder=msgspec.json.decode, schema="pg_catalog", format="text")


async def connect(url: str, *, what: str = "the control-plane database") -> asyncpg.Connection:
    if not url:
        raise LedgerctlError("no_database_url", f"no URL for {what} (set CONTROL_PLANE_DATABASE_URL "
                             "or pass --database-url)")
    try:
        with url_refusals_redacted(f"the URL of {what}"):
            conn = await asyncpg.connect(url, timeout=10)
    except InvalidServerUrl as exc:  # the URL itself: a scheme, port or option wrong (said without the URL)
        raise LedgerctlError("invalid_database_url", str(exc)) from None
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise LedgerctlError("database_unreachable", f"cannot connect to {what}: {exc}",
                             EXIT_UNAVAILABLE) from exc
    await _init_connection(conn)
    return conn


async def migrate_catalog(conn: asyncpg.Connection) -> list[str]:
    return await migrate(conn, MIGRATIONS_DIR)


async def audit(conn: asyncpg.Connection, actor: str, action: str, subject: str, details: dict) -> None:
    await conn.execute(Q["insert_audit"], actor, action, subject, details)


async def audit_once(conn: asyncpg.Connection, actor: str, action: str, subject: str, details: dict) -> bool:
    """The entry unless the log holds one of this action and subject with these details already (an action whose
    first run failed to record it, run again): exactly one. True when it was recorded now."""
    async with conn.transaction():
        await conn.execute(Q["lock_audit_subject"], subject, action)
        return await conn.fetchval(Q["insert_audit_once"], actor, action, subject, details) is not None


async def fetch_cell(conn: asyncpg.Connection, name: str) -> dict:
    row = await conn.fetchrow(Q["fetch_cell"], name)
    if row is None:
        raise LedgerctlError("unknown_cell", f"no cell named {name}")
    return dict(row)


async def fetch_tenant(conn: asyncpg.Connection, tenant_id: str) -> dict:
    row = await conn.fetchrow(Q["fetch_tenant"], tenant_id)
    if row is None:
        raise LedgerctlError("unknown_tenant", f"no tenant {tenant_id}")
    return dict(row)


async def list_cells(conn: asyncpg.Connection) -> list[dict]:
    return [dict(r) for r in await conn.fetch(Q["list_cells"])]


async def list_tenants(conn: asyncpg.Connection, cell: str | None, after: str, limit: int) -> list[dict]:
    return [dict(r) for r in await conn.fetch(Q["list_tenants"], cell, after, limit)]


async def list_audit(conn: asyncpg.Connection, subject: str | None, limit: int) -> list[dict]:
    return [dict(r) for r in await conn.fetch(Q["list_audit"], subject, limit)]
