"""Tenants and API keys of one cell, and the verified-key cache. Keys are random 32-byte secrets; only their
SHA-256 is stored."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
import uuid

import asyncpg

from cell.store import tenants as store

log = logging.getLogger("cell")

TENANT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
KEY_PREFIX = "lk_"
# The states of a tenant row whose requests this cell answers 421 tenant_moved (its key hashes still here): moved_out,
# the tenant left; arriving, a move's copy of it, not its books until the flip (migration 0225). The same states in SQL,
# which cell-wide checks and queue gauges leave out: routines/unserved_tenants.sql.
NOT_SERVED = frozenset({"moved_out", "arriving"})
# The states a checked key is not remembered in (KeyCache): arriving, a move's flip serves it next, and at once; frozen,
# a move's source may be made moved_out next, and must answer 421 from then on. Nor is a key of a tenant a move is
# taking off this cell (tenants.leaving_since, migration 0226, set before the freeze): the move freezes it only once
# the keys remembered before have expired (the largest TTL the cell's processes recorded, record_key_cache_ttl).
NOT_REMEMBERED = frozenset({"arriving", "frozen"})


class TenantError(Exception):
    """An operator error: bad tenant id, unknown tenant or key."""


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_tenant(conn: asyncpg.Connection, tenant_id: str, name: str = "") -> dict:
    """Create the tenant row in this cell; idempotent (returns the existing row)."""
    if not TENANT_ID_PATTERN.match(tenant_id):
        raise TenantError("a tenant id is 1-63 characters of letters, digits, '_', '.', '-'")
    row = await store.insert(conn, tenant_id, name)
    if row is None:
        row = await store.fetch(conn, tenant_id)
    return dict(row)


async def get_tenant(conn: asyncpg.Connection, tenant_id: str) -> dict | None:
    row = await store.fetch(conn, tenant_id)
    return dict(row) if row else None


async def set_tenant_state(conn: asyncpg.Connection, tenant_id: str, state: str) -> dict:
    row = await store.set_state(conn, tenant_id, state)
    if row is None:
        raise TenantError(f"unknown tenant {tenant_id}")
    return dict(row)


async def create_api_key(conn: asyncpg.Connection, tenant_id: str,
                         scopes: tuple[str, ...] = ("read", "write")) -> tuple[dict, str]:
    """Returns (the key's row, the secret). The secret is shown once and never stored."""
    if await get_tenant(conn, tenant_id) is None:
        raise TenantError(f"unknown tenant {tenant_id}")
    secret = new_secret()
    async with conn.transaction():
        # The tenant's write fence, as every write: a move's freeze waits it out, and it never lands on a frozen
        # or moved-out copy (the move has read it: the key would be lost, a revocation undone on the target).
        await store.fence(conn, tenant_id)
        row = await store.insert_key(conn, tenant_id, hash_secret(secret), list(scopes))
    return dict(row), secret


async def list_api_keys(conn: asyncpg.Connection, tenant_id: str) -> list[dict]:
    return [dict(r) for r in await store.list_keys(conn, tenant_id)]


async def revoke_api_key(conn: asyncpg.Connection, tenant_id: str, key_id: uuid.UUID | str) -> dict:
    try:
        key_uuid = uuid.UUID(str(key_id))
    except ValueError as exc:
        raise TenantError(f"{key_id} is not a key id") from exc
    async with conn.transaction():
        await store.fence(conn, tenant_id)  # as create_api_key
        row = await store.revoke_key(conn, tenant_id, key_uuid)
    if row is None:
        raise TenantError(f"no key {key_id} for tenant {tenant_id}")
    return dict(row)


async def authenticate(conn: asyncpg.Connection, tenant_id: str, secret: str) -> bool:
    """True when `secret` is a live key of `tenant_id`. Reveals nothing else."""
    row = await store.find_key(conn, hash_secret(secret))
    return row is not None and secrets.compare_digest(row["tenant_id"], tenant_id)


class KeyCache:
    """secret hash -> (tenant id, tenant state, expiry). A revoked key stops working within `ttl_s` (0.5 s by
    default, CellSettings.api_key_cache_ttl_s). One lookup per key at a time: the requests that miss while it is in
    flight (every connection of a busy client, when its entry expires) share its answer instead of each querying."""

    def __init__(self, ttl_s: float, size_max: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.size_max = size_max
        self._items: dict[bytes, tuple[str, str, float]] = {}
        self._in_flight: dict[bytes, asyncio.Task] = {}

    async def lookup(self, pool: asyncpg.Pool, secret: str) -> tuple[str, str] | None:
        """(tenant id, tenant state) of a live key, or None."""
        return await self.lookup_digest(pool, hash_secret(secret))

    def cached(self, digest: bytes) -> tuple[str, str] | None:
        """(tenant, state) of a key by its hash_secret while it is remembered (within ttl_s); None otherwise."""
        hit = self._items.get(digest)
        if hit is not None and hit[2] > time.monotonic():
            return hit[0], hit[1]
        return None

    async def lookup_digest(self, pool: asyncpg.Pool, digest: bytes) -> tuple[str, str] | None:
        """`lookup` of a key by its hash_secret."""
        hit = self.cached(digest)
        if hit is not None:
            return hit
        task = self._in_flight.get(digest)
        if task is None:
            task = self._in_flight[digest] = asyncio.get_running_loop().create_task(self._fetch(pool, digest))
        return await asyncio.shield(task)  # a caller that gives up does not cancel the others' lookup

    async def _fetch(self, pool: asyncpg.Pool, digest: bytes) -> tuple[str, str] | None:
        try:
            started = time.monotonic()  # the entry lives ttl_s from before the query, as a revocation bound must
            row = await store.find_key(pool, digest)
            if row is None:
                self._items.pop(digest, None)
                return None
            if len(self._items) >= self.size_max:
                self._items.clear()
            if row["state"] not in NOT_REMEMBERED and row["rememberable"]:
                self._items[digest] = (row["tenant_id"], row["state"], started + self.ttl_s)
            else:
                self._items.pop(digest, None)
            return row["tenant_id"], row["state"]
        finally:
            del self._in_flight[digest]


async def record_key_cache_ttl(pool: asyncpg.Pool, keys: KeyCache) -> None:
    """Records in the cell's database, before this process serves a request, how long it remembers a checked key:
    a move off this cell waits that long between marking the tenant leaving and freezing it (migration 0231,
    control_plane/moves.py Mover._leave), whatever the control plane was told."""
    if not await store.record_key_cache_ttl(pool, keys.ttl_s):
        log.warning("the cell's database lacks migration 0231: moves off this cell wait only the control plane's "
                    "CONTROL_PLANE_CELLS_API_KEY_CACHE_TTL_S for this process's CELL_API_KEY_CACHE_TTL_S (%s s)",
                    keys.ttl_s)
