"""Reading the event stream as a consumer does: follow after_cursor until the events wanted are there."""

from __future__ import annotations

import asyncio
import time


async def follow(api, cursor: str | None = None, **filters) -> tuple[list[dict], str | None]:
    """Every event after `cursor`, page after page, and the cursor to continue from."""
    seen: list[dict] = []
    while True:
        params = {"per_page": 100, **filters}
        if cursor:
            params["after_cursor"] = cursor
        r = await api.get("/api/events", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        if not page:
            return seen, cursor
        seen += page
        cursor = r.headers["X-After-Cursor"]


async def events_until(api, count: int, deadline_s: float = 30.0, **filters) -> list[dict]:
    """The tenant's events once at least `count` are listed (the sequencer positions them within ~0.2 s)."""
    deadline = time.monotonic() + deadline_s
    while True:
        seen, _ = await follow(api, **filters)
        if len(seen) >= count:
            return seen
        assert time.monotonic() < deadline, f"only {len(seen)} of {count} events listed: {seen}"
        await asyncio.sleep(0.05)
