"""The audit sealer of one cell, worker side: seals the chain in batches (cell/store/audit.py) and publishes each
tenant's head as an anchor outside the cell (the control plane's catalog, a write-once directory)."""

from __future__ import annotations

import logging
import time

import asyncpg

from cell.store import audit
from control_plane import anchors, catalog
from worker import metrics
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


class Sealer:
    """One per worker process (any number of them: one seals at a time, the others find the lock taken)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.published: dict[str, int] = {}  # tenant -> the head last anchored from here
        self.anchored_at = float("-inf")

    async def run(self, pool: asyncpg.Pool) -> int:
        """Seal what is below the horizon; anchor the heads when audit_anchor_every_s passed. Links written."""
        async with pool.acquire() as conn:
            # Idle, one statement (no transaction, no lock) finds that there is nothing to seal.
            sealed = 0 if await audit.caught_up(conn) else await audit.seal_until_caught_up(
                conn, self.settings.audit_seal_batch_max)
            metrics.AUDIT_LINKS.inc(sealed)
            if time.monotonic() - self.anchored_at >= self.settings.audit_anchor_every_s:
                # Timed from the attempt: an anchor store that is down is tried again audit_anchor_every_s later,
                # not at every seal round (each attempt can wait out a connect timeout), and sealing goes on.
                self.anchored_at = time.monotonic()
                try:
                    await self.anchor(conn)
                except Exception as exc:  # noqa: BLE001 - the anchor store down: the heads go at the next attempt
                    log.warning("anchoring the audit heads failed (next attempt in %.0f s): %s",
                                self.settings.audit_anchor_every_s, exc)
                    metrics.ERRORS.labels("anchor").inc()
        return sealed

    async def anchor(self, conn: asyncpg.Connection) -> int:
        """Publish every head that moved since this process last published it; returns how many."""
        s = self.settings
        fresh = [h for h in await audit.heads(conn) if self.published.get(h["tenant_id"]) != h["seal_seq"]]
        if fresh and s.audit_anchor_database_url:
            catalog_conn = await catalog.connect(s.audit_anchor_database_url, what="the control plane (anchors)")
            try:
                await anchors.publish_to_catalog(catalog_conn, s.cell_name, fresh)
            finally:
                await catalog_conn.close()
        if fresh and s.audit_anchor_dir:
            anchors.publish_to_directory(s.audit_anchor_dir, s.cell_name, fresh)
        self.published.update({h["tenant_id"]: h["seal_seq"] for h in fresh})
        metrics.AUDIT_ANCHORS.inc(len(fresh))
        return len(fresh)
