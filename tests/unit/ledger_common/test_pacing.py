"""Pollers' pacing: fast while they find work, backing off to the idle interval while they find none, and a nudge
(work this process just wrote) ends even the idle wait at once."""

from __future__ import annotations

import asyncio
import threading
import time

from ledger_common.pacing import AsyncPacer, Pacer

IDLE_S = 60.0  # far longer than any wait below: a round that comes sooner was not waiting out the idle interval


def test_empty_rounds_back_off_to_the_idle_interval_and_work_snaps_back_to_the_fast_one():
    pacer = Pacer(0.2, 1.0)
    assert [pacer.after(False) for _ in range(5)] == [0.4, 0.8, 1.0, 1.0, 1.0]
    assert pacer.after(True) == 0.2
    assert pacer.after(False) == 0.4
    assert Pacer(2.0, 2.0).after(False) == 2.0  # a fixed interval stays fixed


def test_a_nudge_ends_a_thread_poller_s_idle_wait():
    pacer = Pacer(0.01, IDLE_S)
    for _ in range(20):
        pacer.after(False)
    assert pacer.interval_s == IDLE_S
    woke = threading.Event()

    def poller() -> None:
        pacer.wait(time.monotonic(), False)
        woke.set()

    threading.Thread(target=poller, daemon=True).start()
    pacer.nudge()
    assert woke.wait(IDLE_S / 4)
    assert pacer.interval_s == 0.01  # and it polls fast again


def test_a_nudge_before_the_wait_is_not_lost():
    event = threading.Event()
    pacer = Pacer(0.01, IDLE_S, event)
    event.set()  # written while the round ran, by whoever was given the event
    started = time.monotonic()
    pacer.wait(time.monotonic(), False)
    assert time.monotonic() - started < IDLE_S / 4


async def test_a_nudge_ends_an_event_loop_poller_s_idle_wait():
    pacer = AsyncPacer(0.01, IDLE_S)
    for _ in range(20):
        pacer.after(False)
    waiting = asyncio.create_task(pacer.wait(time.monotonic(), False))
    await asyncio.sleep(0)
    assert not waiting.done()
    pacer.nudge()
    await asyncio.wait_for(waiting, IDLE_S / 4)
    assert pacer.interval_s == 0.01


async def test_a_poller_cancelled_as_it_is_nudged_ends():
    """A task cancelled in the same turn of the loop as its wait is nudged (a shutdown while postings still arrive)
    ends cancelled: asyncio.wait_for on Python 3.11 returned the finished wait instead and lost the cancellation, and
    the API process's shutdown waited for its sequencer forever (seen once in CI)."""
    pacer = AsyncPacer(0.05, IDLE_S)
    waiting = asyncio.create_task(pacer.wait(time.monotonic(), False))
    await asyncio.sleep(0)  # it waits
    pacer.nudge()
    waiting.cancel()
    done, _ = await asyncio.wait({waiting}, timeout=IDLE_S / 4)
    assert done and waiting.cancelled()
