"""Tenants' and API keys' SQL, and the tenant write fence every writing transaction takes first."""

from __future__ import annotations

import uuid

import asyncpg

from cell.store.queries import Q


async def fence(conn: asyncpg.Connection, tenant_id: str) -> None:
    """The shared advisory lock a tenant move waits out; raises TenantFrozen / TenantMoved (via translate)."""
    await conn.execute(Q["fence_tenant"], tenant_id)


async def fence_exclusive(conn: asyncpg.Connection, tenant_id: str, wait_ms: int) -> None:
    """The fence's lock taken exclusively for the rest of the caller's transaction (a change that the tenant's
    concurrent writes must not straddle), waited for at most `wait_ms` (then LockTimeout: nothing was written)."""
    await conn.execute(Q["fence_tenant_exclusive"], tenant_id, f"{wait_ms}ms")


async def insert(conn: asyncpg.Connection, tenant_id: str, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["insert_tenant"], tenant_id, name)


async def fetch(conn: asyncpg.Connection, tenant_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["fetch_tenant"], tenant_id)


async def set_state(conn: asyncpg.Connection, tenant_id: str, state: str) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["set_tenant_state"], tenant_id, state)


async def insert_key(conn: asyncpg.Connection, tenant_id: str, secret_hash: bytes,
                     scopes: list[str]) -> asyncpg.Record:
    return await conn.fetchrow(Q["insert_api_key"], uuid.uuid4(), tenant_id, secret_hash, scopes)


async def list_keys(conn: asyncpg.Connection, tenant_id: str) -> list:
    return await conn.fetch(Q["list_api_keys"], tenant_id)


async def revoke_key(conn: asyncpg.Connection, tenant_id: str, key_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["revoke_api_key"], tenant_id, key_id)


async def find_key(conn: asyncpg.Connection | asyncpg.Pool, secret_hash: bytes) -> asyncpg.Record | None:
    """The live key with this secret hash, with its tenant's state."""
    return await conn.fetchrow(Q["find_api_key"], secret_hash)


async def record_key_cache_ttl(conn: asyncpg.Connection | asyncpg.Pool, ttl_s: float) -> bool:
    """Records that a process of the cell remembers checked keys for `ttl_s`: the cell keeps the largest recorded
    (0231). False on a cell without 0231 (a process started before its migration ran): nothing recorded."""
    if not await conn.fetchval(Q["api_key_cache_ttl_table"]):
        return False
    await conn.execute(Q["record_api_key_cache_ttl"], ttl_s)
    return True


async def key_cache_ttl(conn: asyncpg.Connection | asyncpg.Pool) -> float | None:
    """The largest key-cache TTL the cell's API processes recorded; None when none did (or the cell lacks 0231)."""
    if not await conn.fetchval(Q["api_key_cache_ttl_table"]):
        return None
    return await conn.fetchval(Q["api_key_cache_ttl"])


async def delete_empty(conn: asyncpg.Connection, tenant_id: str) -> dict[str, int]:
    """Delete a tenant's row and its revoked keys, in the caller's transaction, once the caller found it holds
    nothing else (control_plane's `tenants delete`, under the exclusive fence); a live key makes it fail (the key's
    foreign key). The rows deleted, per table."""
    keys = await conn.execute(Q["delete_revoked_keys"], tenant_id)
    tenants = await conn.execute(Q["delete_tenant"], tenant_id)
    return {"tenants": int(tenants.split()[-1]), "api_keys": int(keys.split()[-1])}
