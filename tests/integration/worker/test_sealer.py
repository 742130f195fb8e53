"""`python -m worker` seals the audit chain on its own (no nudge, no beat needed) and anchors each tenant's head
outside the cell: in the control plane's catalog and in a write-once directory."""

from __future__ import annotations

import asyncpg
import pytest
from worker_helpers import new_book, post, wait_until

from cell.store import audit
from control_plane import anchors
from control_plane.catalog import connect, migrate_catalog


async def test_the_worker_seals_and_anchors_every_tenant_head(pool, sqs_queue, worker_process, make_database,
                                                              tmp_path):
    catalog_url = make_database("worker_anchors", migrate_cell=False)
    catalog = await connect(catalog_url)
    await migrate_catalog(catalog)
    try:
        async with pool.acquire() as conn:
            book = await new_book(conn, {"settlement": "credit", "card": "debit"})
            for amount in (10, 20, 30):
                await post(conn, book, [("card", "debit", amount), ("settlement", "credit", amount)])
        worker = worker_process(sqs_queue, audit_seal_every_s=0.2, audit_anchor_every_s=0.5,
                                audit_anchor_dir=tmp_path, audit_anchor_database_url=catalog_url)

        async def anchored() -> list:
            found = await anchors.read(book.tenant, catalog, str(tmp_path))
            return found if {a.seal_seq for a in found} == {5} and len(found) == 2 else []  # 3 versions, 2 accounts

        published = await wait_until(anchored, what="the head anchored in both stores\n" + worker.log())
        async with pool.acquire() as conn:
            report = await audit.verify_chain(conn, book.tenant, published)
        assert report.findings == [] and report.head_seq == 5 and report.anchors_checked == 2
        # write-once: the directory's anchor is read-only, the catalog refuses to change its row
        (path,) = (tmp_path / book.tenant).glob("*.json")
        assert not path.stat().st_mode & 0o222
        with pytest.raises(asyncpg.PostgresError, match="write-once"):
            await catalog.execute("UPDATE audit_anchors SET hash = '\\x00' WHERE tenant_id = $1", book.tenant)
    finally:
        await catalog.close()
