"""The asyncpg pool: numeric balances decoded as int, no reset query on release (we leave no session state)."""

from __future__ import annotations

import asyncpg
import msgspec


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Balances are numeric(39,0) so that they can never overflow; they are whole numbers, so int is exact.
    await conn.set_type_codec("numeric", encoder=str, decoder=int, schema="pg_catalog", format="text")
    await conn.set_type_codec("jsonb", encoder=lambda v: msgspec.json.encode(v).decode(),
                              decoder=msgspec.json.decode, schema="pg_catalog", format="text")


async def _no_reset(conn: asyncpg.Connection) -> None:
    # asyncpg's default reset costs a round trip per release (+35% end to end when skipped, PERFORMANCE.md).
    return None


async def create_pool(url: str, *, min_size: int, max_size: int) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection, reset=_no_reset,
        server_settings={"application_name": "cellledger", "jit": "off"},
    )
