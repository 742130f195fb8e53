"""The drain's pure helpers: wire format, dedupe, grouping, which messages may be deleted."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from ledger_common.nudge import NUDGE_VERSION, decode_nudge, encode_nudges
from worker.batching import Received, batch_accounts, chunks, deletable, group_accounts
from worker.settings import load_settings


def _ids(n: int) -> list[uuid.UUID]:
    return [uuid.uuid4() for _ in range(n)]


def test_a_nudge_round_trips_deduped_and_sorted():
    accounts = [str(a) for a in _ids(3)]
    [body] = encode_nudges("t1", accounts + accounts[:1])
    assert msgspec.json.decode(body) == {"v": NUDGE_VERSION, "t": "t1", "a": sorted(accounts)}
    tenant, decoded = decode_nudge(body)
    assert tenant == "t1"
    assert list(decoded) == sorted(uuid.UUID(a) for a in accounts)


def test_nudges_are_cut_at_accounts_per_message_max():
    accounts = [str(a) for a in _ids(7)]
    bodies = encode_nudges("t1", accounts, accounts_per_message_max=3)
    assert len(bodies) == 3
    decoded = [a for b in bodies for a in decode_nudge(b)[1]]
    assert sorted(map(str, decoded)) == sorted(accounts)


@pytest.mark.parametrize("body", ["", "{", "[]", '{"v":2,"t":"x","a":[]}', '{"v":1,"t":"x","a":["nope"]}',
                                  '{"v":1,"t":1,"a":[]}'])
def test_anything_else_is_not_a_nudge(body):
    assert decode_nudge(body) is None


def test_batch_accounts_dedupes_across_messages_and_sorts():
    a, b, c = sorted(_ids(3))
    batch = [Received("1", "r1", "t", (c, a)), Received("2", "r2", "t", (a, b)), Received("3", "r3", None, None)]
    assert batch_accounts(batch) == [a, b, c]


def test_groups_are_sorted_and_bounded():
    accounts = _ids(10)
    groups = group_accounts(accounts + accounts[:4], 4)
    assert [len(g) for g in groups] == [4, 4, 2]
    flat = [a for g in groups for a in g]
    assert flat == sorted(accounts)
    with pytest.raises(ValueError):
        chunks([1], 0)


def test_a_message_is_deleted_only_when_all_its_accounts_are_handled():
    a, b, c = _ids(3)
    done, partly, bad = (Received("1", "r1", "t", (a,)), Received("2", "r2", "t", (a, b)),
                         Received("3", "r3", None, None))
    assert deletable([done, partly, bad], {a, c}) == [done, bad]
    assert deletable([done, partly], {a, b}) == [done, partly]


def test_settings_read_worker_then_ledger_prefix_once():
    s = load_settings({"WORKER_BATCH_SIZE_MAX": "7", "LEDGER_BATCH_SIZE_MAX": "9", "LEDGER_SWEEP_AFTER_S": "1.5",
                       "WORKER_SQS_QUEUE_URL": "http://127.0.0.1:5/123456789012/cell-7-q", "WORKER_BEAT": "false"})
    assert (s.batch_size_max, s.sweep_after_s, s.beat) == (7, 1.5, False)
    assert s.queue_name == "cell-7-q"
    assert s.celery_queue.endswith("cell-7-q")
    with pytest.raises((ValueError, msgspec.ValidationError)):
        load_settings({"WORKER_LONG_POLL_S_MAX": "21"})
    with pytest.raises(ValueError, match="db_pool_max must be >= 2"):  # the deliverer would wait on itself for good
        load_settings({"WORKER_DB_POOL_MAX": "1"})
