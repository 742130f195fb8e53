"""Requests that arrive together, sent together: the one mechanism (forming, statements in flight, landing,
cancellation) behind the batched balance reads (reads.py) and the posting groups (posting_groups.py)."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, TypeVar

I = TypeVar("I")  # an item: what one request asks
R = TypeVar("R")  # its answer
ALONE = object()  # an item's answer when it is to be served on its own (its group was not sent, or gave it back)


class Gatherer(Generic[I, R]):
    """The first item of a key (a tenant) in a turn of the event loop lets the others ready to run join it (one
    asyncio.sleep(0)), then `together(key, items)` serves them all in one statement and hands each its answer (a
    list in the items' order, the first item's first; ALONE for an item to be served on its own). An item alone
    is served by `alone(key, item)`: it costs one extra pass of the event loop. A group formed while the key has
    `in_flight_max` statements in flight stays open until one of them is answered, so that under load one
    statement serves the items of a whole round trip. At most `size_max` items a group (1: no groups at all).

    Errors and cancellation: an item gets the error of the statement it was in. A group whose first item's request
    is cancelled while the group forms is not sent: the others are served on their own. An item cancelled while its
    group forms is left out of it. Once formed (its statement may still wait for a connection), with `keep_sent` the
    group is never stopped by a request's cancellation (its items may write: each other item gets its answer, the
    cancelled one's goes as if its request had ended after the statement); without it (reads), the first item's
    cancellation cancels the statement and the others are served on their own."""

    def __init__(self, together: Callable[[str, list[I]], Awaitable[list]],
                 alone: Callable[[str, I], Awaitable[R]], *, size_max: int, in_flight_max: int,
                 keep_sent: bool = False) -> None:
        self._together = together
        self._alone = alone
        self._size_max = size_max
        self._in_flight_max = in_flight_max
        self._keep_sent = keep_sent
        self._forming: dict[str, list[tuple[I, asyncio.Future]]] = {}
        self._in_flight: dict[str, int] = {}  # key -> its statements sent and not yet answered
        self._landing: dict[str, list[asyncio.Future]] = {}  # key -> groups waiting for one to be answered

    async def submit(self, key: str, item: I) -> R:
        """The item's answer, served in a group of the key's items or on its own."""
        if self._size_max <= 1:
            return await self._alone(key, item)
        forming = self._forming.get(key)
        if forming is not None and len(forming) < self._size_max - 1:  # with its first item
            joined = asyncio.get_running_loop().create_future()
            forming.append((item, joined))
            answer = await joined
            return answer if answer is not ALONE else await self._alone(key, item)
        group = self._forming[key] = []
        try:
            await asyncio.sleep(0)  # every item ready to run now joins
            while self._in_flight.get(key, 0) >= self._in_flight_max:
                await self._landed(key)  # and every item that arrives until one is answered
        except BaseException:  # cancelled: the items that joined are served on their own
            _give_back(group)
            raise
        finally:
            if self._forming.get(key) is group:  # not yet a further group's, full as it was
                del self._forming[key]
        if group:
            group = [(joined_item, joined) for joined_item, joined in group if not joined.done()]  # none cancelled
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        if not group:
            try:
                return await self._alone(key, item)
            finally:
                self._land(key)
        if self._keep_sent:
            sent = asyncio.ensure_future(self._send(key, item, group))
            sent.add_done_callback(_retrieve)
            answer = await asyncio.shield(sent)
        else:
            answer = await self._send(key, item, group)
        return answer if answer is not ALONE else await self._alone(key, item)

    async def _send(self, key: str, item: I, group: list[tuple[I, asyncio.Future]]):
        """One statement for the item and its group; each joined item gets its answer or the statement's error."""
        try:
            answers = await self._together(key, [item, *(joined_item for joined_item, _ in group)])
        except BaseException as exc:
            for _, joined in group:
                if not joined.done():
                    if isinstance(exc, Exception):
                        joined.set_exception(exc)
                    else:  # the first item's request was cancelled: the others were not, they go on their own
                        joined.set_result(ALONE)
            raise
        finally:
            self._land(key)
        for (_, joined), answer in zip(group, answers[1:]):
            if not joined.done():  # a cancelled request's future is done
                joined.set_result(answer)
        return answers[0]

    def _landed(self, key: str) -> asyncio.Future:
        """Done when one of the key's statements in flight is answered (or failed)."""
        landed = asyncio.get_running_loop().create_future()
        self._landing.setdefault(key, []).append(landed)
        return landed

    def _land(self, key: str) -> None:
        """A statement of the key answered: every group waiting looks again (one of them goes)."""
        left = self._in_flight[key] - 1
        if left:
            self._in_flight[key] = left
        else:
            del self._in_flight[key]
        for landed in self._landing.pop(key, ()):
            if not landed.done():
                landed.set_result(None)


def _give_back(group: list[tuple[object, asyncio.Future]]) -> None:
    for _, joined in group:
        if not joined.done():
            joined.set_result(ALONE)


def _retrieve(sent: asyncio.Future) -> None:
    """A kept statement whose first request was cancelled: its error went to the others; nothing to log."""
    if not sent.cancelled():
        sent.exception()
