"""ledger_new_id: the ids the database gives its own rows (events, webhook deliveries) are time-ordered, as the
service's are (cell/service/common.new_ids): version 7, the millisecond they were made first, so later rows sort
after in the indexes keyed by them."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

DEADLINE_S = 10.0


def unix_ms(value: uuid.UUID) -> int:
    return value.int >> 80


async def test_an_id_is_version_7_and_carries_the_millisecond_it_was_made(db):
    before = int(datetime.now(UTC).timestamp() * 1000)
    ids = [await db.fetchval("SELECT ledger_new_id()") for _ in range(50)]
    after = int(datetime.now(UTC).timestamp() * 1000)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert all(before - 5 <= unix_ms(i) <= after + 5 for i in ids)
    assert len(set(ids)) == len(ids)


async def test_an_id_made_in_a_later_millisecond_sorts_after(db):
    first = await db.fetchval("SELECT ledger_new_id()")
    deadline = time.monotonic() + DEADLINE_S
    while unix_ms(later := await db.fetchval("SELECT ledger_new_id()")) == unix_ms(first):
        assert time.monotonic() < deadline, "the clock never moved on"
    assert later > first


async def test_an_event_is_named_by_it(db):
    await db.execute("SELECT ledger_event('t-new-id', 'ledger_transaction', 'ledger_transaction.created', $1,"
                     " '{}'::jsonb)", uuid.uuid4())
    event_id = await db.fetchval("SELECT id FROM events WHERE tenant_id = 't-new-id'")
    assert event_id.version == 7
