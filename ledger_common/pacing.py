"""When a poller runs next: at its fast interval while it finds work or is nudged, backing off to an idle interval
while it finds none, in a thread (Pacer) or on an event loop (AsyncPacer).

After a round that found nothing the interval doubles, from the fast one up to idle_s_max; a round that found work
puts it back to the fast one. A nudge (what this process just wrote may be work for the poller) cuts the wait short:
the next round starts fast_s after the previous one ended, or at once if that is past. So under load a poller runs
exactly as often as with a fixed fast interval, never more; idle, it runs every idle_s_max."""

from __future__ import annotations

import asyncio
import threading
import time


class _Backoff:
    def __init__(self, fast_s: float, idle_s_max: float) -> None:
        self.fast_s = fast_s
        self.idle_s_max = max(idle_s_max, fast_s)
        self.interval_s = fast_s

    def after(self, found: bool) -> float:
        """The wait after a round, given whether it found work."""
        self.interval_s = self.fast_s if found else min(self.interval_s * 2, self.idle_s_max)
        return self.interval_s


class Pacer(_Backoff):
    """For a poller in a thread of its own; nudge() from any thread."""

    def __init__(self, fast_s: float, idle_s_max: float, nudged: threading.Event | None = None) -> None:
        super().__init__(fast_s, idle_s_max)
        self._nudged = nudged or threading.Event()  # given: set by whoever writes this poller's work

    def nudge(self) -> None:
        self.interval_s = self.fast_s
        self._nudged.set()

    def wait(self, since: float, found: bool) -> None:
        """Sleep until the next round, counted from `since` (time.monotonic(): when the last round ended)."""
        nudged = self._nudged.wait(max(0.0, since + self.after(found) - time.monotonic()))
        self._nudged.clear()  # the round that follows starts after any nudge made before this
        if nudged:
            time.sleep(max(0.0, since + self.fast_s - time.monotonic()))


class AsyncPacer(_Backoff):
    """For a poller task on an event loop; nudge() from that loop."""

    def __init__(self, fast_s: float, idle_s_max: float) -> None:
        super().__init__(fast_s, idle_s_max)
        self._nudged = asyncio.Event()

    def nudge(self) -> None:
        self.interval_s = self.fast_s
        self._nudged.set()

    async def wait(self, since: float, found: bool, until: float = float("inf")) -> None:
        """As Pacer.wait; never past `until` (time.monotonic())."""
        timeout = max(0.0, min(since + self.after(found), until) - time.monotonic())
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for returned a wait that finished in the same turn as
        # a cancellation and lost the cancellation (a shutdown then waited for this poller forever).
        try:
            async with asyncio.timeout(timeout):
                await self._nudged.wait()
            nudged = True
        except TimeoutError:
            nudged = False
        self._nudged.clear()
        if nudged:
            await asyncio.sleep(max(0.0, min(since + self.fast_s, until) - time.monotonic()))
