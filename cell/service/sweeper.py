"""The API process's sweeper: a background task applying effects left unapplied longer than the bound, so the
sweeper never shares fate with the workers, Redis, SQS or beat (cell.store.sweep, as the workers run it)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from prometheus_client import Counter

from cell.settings import CellSettings
from cell.store import sweep as store_sweep

log = logging.getLogger(__name__)

SWEPT = Counter("ledger_cell_effects_swept_total", "Balance effects applied by the API process's sweeper")
SWEEP_FAILURES = Counter("ledger_cell_sweep_failures_total", "Sweeps of the API process that failed")


async def sweep_once(pool: asyncpg.Pool, settings: CellSettings) -> int:
    outcome = await store_sweep.sweep(pool, after_s=settings.sweep_after_s, accounts_max=settings.sweep_accounts_max)
    SWEPT.inc(outcome.applied)
    if outcome.failed_groups:
        SWEEP_FAILURES.inc(outcome.failed_groups)
    if outcome.applied:
        log.info("API sweeper applied %d effects", outcome.applied)
    return outcome.applied


async def run(pool: asyncpg.Pool, settings: CellSettings) -> None:
    """Sweep every sweep_interval_s until cancelled; a failed sweep (database down) is retried next interval."""
    while True:
        try:
            await sweep_once(pool, settings)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the database is down: the next interval tries again
            SWEEP_FAILURES.inc()
            log.warning("sweep failed: %s", exc)
        await asyncio.sleep(settings.sweep_interval_s)
