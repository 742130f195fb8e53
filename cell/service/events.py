"""Events (Modern Treasury's): writing one beside a change made here, rendering a stored one (its `data` as the
API renders the object, finished from the facts a routine stored: 0041_event_facts.sql), reading and listing
the stream in position order, and the API process's sequencer loop."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from cell.ledger.errors import NotFound
from cell.ledger.webhooks import EVENT_NAMES
from cell.service import views
from cell.service.common import Page, SeqPosition, cursors, new_ids
from cell.service.context import CellContext
from cell.settings import CellSettings
from cell.store import events as store
from ledger_common.pacing import AsyncPacer

log = logging.getLogger(__name__)

TRANSACTION_CREATED = "ledger_transaction.created"
_KNOWN = frozenset(EVENT_NAMES)


class Draft(msgspec.Struct, frozen=True):
    """An event rendered before the routine that makes its change runs (`ledger_events`), named here as the service
    names every row it writes (common.new_ids): the database's own naming (ledger_new_id) read the OS's randomness
    by a file opened and closed per id where PostgreSQL is built without OpenSSL (the embedded one: ~30 us of a
    posting's ~0.2 ms of event)."""

    resource: str
    event_name: str
    entity_id: uuid.UUID
    data: Any
    id: uuid.UUID = msgspec.field(default_factory=lambda: new_ids(1)[0])

    def __post_init__(self) -> None:
        if self.event_name not in _KNOWN:  # a programmer's error: an endpoint could not ask for it
            raise ValueError(f"{self.event_name} is not in cell.ledger.webhooks.EVENT_NAMES")


def transaction_event(event_name: str, view: views.LedgerTransaction) -> Draft:
    """A transaction's event: the only maker of events of that resource, each named as store.TRANSACTION_NAMES says
    (lists of other names and resources rely on it to take indexes without a transaction's events)."""
    if not event_name.startswith(store.TRANSACTION_NAMES):
        raise ValueError(f"not a transaction's event name: {event_name}")
    return Draft(store.TRANSACTION_RESOURCE, event_name, view.id, view)


async def emit(ctx: CellContext, conn: asyncpg.Connection, tenant_id: str, resource: str, event_name: str,
               view) -> None:
    """The event of a change made by this transaction, `view` the object as the API answers it (final data)."""
    if ctx.settings.events_enabled:
        await store.insert(conn, tenant_id, [Draft(resource, event_name, view.id, view)])


class _MonitorRow(msgspec.Struct):
    """A monitor's row as ledger_monitor stores it in an event (to_jsonb)."""

    id: uuid.UUID
    ledger_account_id: uuid.UUID
    description: str | None
    alert_field: str
    alert_operator: str
    alert_value: int
    metadata: dict[str, str]
    discarded_at: datetime | None
    created_at: datetime
    updated_at: datetime


def data_of(resource: str, event_name: str, data, facts, event_time: datetime) -> dict:
    """An event's `data` as the API renders the object: stored final, or finished here from the routine's facts."""
    if facts is None:
        return data
    if resource == "ledger_transaction":
        view = msgspec.convert(data, views.LedgerTransaction)
        if event_name == TRANSACTION_CREATED:
            view = views.stamp_post(view, event_time, {r["id"]: r for r in facts.get("entries", [])},
                                    facts.get("archived_reason"))
        elif "updated_at" in facts:  # a pending transaction's entries replaced (ledger_replace_entries' answer)
            view = views.stamp_replace(view, event_time, {r["id"]: r for r in facts["entries"]})
        else:
            view = views.stamp_update(view, event_time)
        return msgspec.to_builtins(view)
    if resource == "ledger_account_balance_monitor":
        row = msgspec.structs.asdict(msgspec.convert(data, _MonitorRow, strict=False))
        return msgspec.to_builtins(views.balance_monitor(row, facts))
    raise ValueError(f"no rendering of stored facts for resource {resource}")


def render(row) -> views.Event:
    """A stored, positioned event as the API (and a webhook) shows it."""
    at = views.utc(row["event_time"])
    return views.Event(id=row["id"], object="event", live_mode=True, resource=row["resource"],
                       event_name=row["event_name"], entity_id=row["entity_id"],
                       data=data_of(row["resource"], row["event_name"], row["data"], row["facts"], at),
                       event_time=at, created_at=at, updated_at=at)


def webhook_body(row) -> bytes:
    """The JSON Modern Treasury posts to a webhook: the event object exactly as GET /api/events/{id} renders it."""
    return msgspec.json.encode(render(row))


async def get_event(ctx: CellContext, tenant_id: str, event_id: uuid.UUID) -> views.Event:
    row = await ctx.run(lambda conn: store.fetch(conn, tenant_id, event_id))
    if row is None:
        raise NotFound(f"event {event_id} not found")
    return render(row)


async def list_events(ctx: CellContext, tenant_id: str, *, after_cursor: str | None, per_page: int,
                      **filters) -> Page[views.Event]:
    """The stream in position order. Unlike other lists, a page that shows events always carries the cursor of the
    last one, the last page too: a consumer keeps following it and sees each later event once, in order (an empty
    page carries none: keep the cursor you have)."""
    box = cursors(ctx.settings, tenant_id, "events")
    after, = box.open(after_cursor, SeqPosition) or (0,)
    rows = await ctx.run(lambda conn: store.list_page(conn, tenant_id, after_position=after, limit=per_page,
                                                      **filters))
    return Page([render(r) for r in rows], box.seal((rows[-1]["position"],)) if rows else None, per_page)


async def run_sequencer(pool: asyncpg.Pool, settings: CellSettings, pacer: AsyncPacer) -> None:
    """Position due events until cancelled (beside the workers' sequencers: one runs at a time, the others return at
    once): every events_sequence_interval_s while it finds events or this process writes (`pacer` is nudged after
    each use case), backing off to events_sequence_idle_s while the cell is idle."""
    while True:
        positioned = 0
        try:
            positioned = await store.sequence_due(pool)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the database is down: the next interval tries again
            log.warning("events sequencer failed: %s", exc)
        await pacer.wait(time.monotonic(), positioned > 0)


def sequencer_pacer(settings: CellSettings) -> AsyncPacer:
    return AsyncPacer(settings.events_sequence_interval_s, settings.events_sequence_idle_s)
