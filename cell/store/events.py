"""Events' SQL, wrapped once: write one (a change made in Python), read and list the positioned ones, and run
the sequencer that positions them (0040_events.sql, routines/sequence_events.sql)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from cell.store.filters import Where
from cell.store.queries import Q

# A transaction's events (every posting writes one: most of the stream) are the only ones of this resource, and all
# are named TRANSACTION_NAMES + action (service.events.transaction_event). The others are in indexes of their own
# by name and by resource (0192, partial), which a list reaches by saying it wants no transaction's.
TRANSACTION_RESOURCE = "ledger_transaction"
TRANSACTION_NAMES = TRANSACTION_RESOURCE + "."
SEQUENCE_BATCH_MAX = 10_000  # events positioned per sequencer call (the next call continues)
POSITIONED_CHANNEL = "ledger_events_positioned"  # notified by a sequencer call that positioned events


async def insert(conn: asyncpg.Connection, tenant_id: str, drafts: list) -> None:
    """Events whose `data` is final, rendered and named by the service (service.events.Draft), in the caller's
    transaction (which made the change)."""
    await conn.execute(Q["insert_events"], tenant_id, drafts)


async def fetch(conn: asyncpg.Connection, tenant_id: str, event_id) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["fetch_event"], tenant_id, event_id)


async def list_page(conn: asyncpg.Connection, tenant_id: str, *, after_position: int, limit: int,
                    entity_id: uuid.UUID | None = None, event_name: str | None = None, resource: str | None = None,
                    event_time_start: datetime | None = None, event_time_end: datetime | None = None) -> list:
    """Positioned events after `after_position`, in position order (the stream's order). Of a name or resource other
    than a transaction's, by their own index: a walk of the tenant's events for them read the whole stream (~520
    buffers at 20,000 postings; tests/integration/store/test_list_reads.py). At or after a time, from the last
    position whose events are all before it (routines/events_before.sql), not from the stream's start; at or before
    a time, up to the first position after which every event is later (routines/events_until.sql), not to its end."""
    w = Where(tenant_id)
    after = w.bind(after_position)
    w.clauses.append(f"position > {after}")
    if event_time_start is not None:
        w.add("position > ledger_events_before($1, {})", event_time_start)
    if event_time_end is not None:
        w.add(f"position <= (SELECT ledger_events_until($1, {{}}, {after}))", event_time_end)
    if ((event_name is not None and not event_name.startswith(TRANSACTION_NAMES))
            or (resource is not None and resource != TRANSACTION_RESOURCE)):
        w.clauses.append(f"resource <> '{TRANSACTION_RESOURCE}'")  # the partial indexes' condition, as they state it
    for column, op, value in (("entity_id", "=", entity_id), ("event_name", "=", event_name),
                              ("resource", "=", resource), ("event_time", ">=", event_time_start),
                              ("event_time", "<=", event_time_end)):
        if value is not None:
            w.add(f"{column} {op} {{}}", value)
    limit_ref = w.bind(limit)
    return await conn.fetch(
        "SELECT id, resource, event_name, entity_id, data, facts, event_time, position FROM events "
        f"WHERE tenant_id = $1{w.sql()} ORDER BY position LIMIT {limit_ref}", *w.args)


async def sequence(conn: asyncpg.Connection | asyncpg.Pool, limit: int = SEQUENCE_BATCH_MAX) -> int:
    """Position up to `limit` events below the horizon; 0 when another sequencer is running or nothing is due."""
    return await conn.fetchval(Q["sequence_events"], limit)


async def sequence_due(pool: asyncpg.Pool) -> int:
    """Position every event due now, batch after batch (the sequencers' loops, in the workers and the API)."""
    total = 0
    while True:
        positioned = await sequence(pool)
        total += positioned
        if positioned < SEQUENCE_BATCH_MAX:
            return total


async def sequence_tenant(conn: asyncpg.Connection, tenant_id: str) -> int:
    """Position every event of a tenant whose writes are fenced off (a move's freeze holds the exclusive lock)."""
    return await conn.fetchval(Q["sequence_tenant_events"], tenant_id)
