"""The async queue as the metrics see it: unapplied balance effects and the age of the oldest."""

from __future__ import annotations

import asyncpg

from cell.store.queries import Q


async def depth_and_age(conn: asyncpg.Connection) -> tuple[int, float]:
    """(unapplied effects, age in seconds of the oldest; 0 when none)."""
    row = await conn.fetchrow(Q["worker_queue_gauges"])
    return int(row["unapplied_effects"]), float(row["oldest_unapplied_age_s"])
