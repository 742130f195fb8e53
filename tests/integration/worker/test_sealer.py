"""`python -m worker` seals the audit chain on its own (no nudge, no beat needed) and anchors each tenant's head
outside the cell: in the control plane's catalog and in a write-once directory."""

from __future__ import annotations

import socket

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


async def test_an_anchor_store_that_is_down_is_tried_once_an_interval_and_sealing_goes_on(pool, sqs_queue,
                                                                                         worker_process):
    """The catalog refuses connections: the sealer goes on sealing every round, and tries the anchor again only
    audit_anchor_every_s later (not at every round: each attempt can wait out a connect timeout)."""
    with socket.socket() as s:  # a port nobody listens on: every connection is refused
        s.bind(("127.0.0.1", 0))
        down_url = f"postgresql://ledger@127.0.0.1:{s.getsockname()[1]}/catalog"
    async with pool.acquire() as conn:
        book = await new_book(conn, {"settlement": "credit", "card": "debit"})
        await post(conn, book, [("card", "debit", 10), ("settlement", "credit", 10)])
    worker = worker_process(sqs_queue, audit_seal_every_s=0.1, audit_anchor_every_s=600,
                            audit_anchor_database_url=down_url)
    failure = "cannot connect to the control plane (anchors)"

    async def failed_once() -> bool:
        return failure in worker.log()

    await wait_until(failed_once, what="the first anchor attempt failing\n" + worker.log())
    for amount in (20, 30, 40):  # each sealed by a later round, while the anchor store is still down
        async with pool.acquire() as conn:
            await post(conn, book, [("card", "debit", amount), ("settlement", "credit", amount)])

            async def sealed() -> bool:
                return await audit.caught_up(conn)

            await wait_until(sealed, what="the posting sealed\n" + worker.log())
    assert worker.log().count(failure) == 1, worker.log()
