"""Transaction and entry ids: RFC 9562 version 7 UUIDs, unique, and those made in a later millisecond sort after."""

from __future__ import annotations

import time
import uuid

from cell.service.common import new_ids


def test_ids_are_unique_version_7_uuids_with_the_current_millisecond_first():
    before = time.time_ns() // 1_000_000
    ids = new_ids(1000)
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 1000
    for i in ids:
        assert i.version == 7 and i.variant == uuid.RFC_4122
        assert before <= i.int >> 80 <= after
        assert uuid.UUID(str(i)) == i  # the same value through its text form, as the API sends it


def test_ids_made_in_a_later_millisecond_sort_after():
    first = new_ids(5)
    made = time.time_ns() // 1_000_000
    deadline = time.monotonic() + 5
    while time.time_ns() // 1_000_000 == made:  # the next millisecond, whatever the clock's resolution
        assert time.monotonic() < deadline
    later = new_ids(5)
    assert max(first) < min(later)
    assert max(str(i) for i in first) < min(str(i) for i in later)  # and in their text form
