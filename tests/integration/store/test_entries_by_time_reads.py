"""A page of a tenant's entries by effective time, naming no account or transaction (`GET /api/ledger_entries?order_by
[effective_at]=asc`, a window of more transactions than entries.TRANSACTIONS_READ_BY_IDS_MAX, pending ones), reads its
rows and those of its effective times, whatever the tenant's history grows to, in the request sessions
(db.INDEX_PLANS), on plans made while the tables were tiny and after an analyze. Before: the tenant's every entry was
read and sorted for a page (~732,000 buffers at 43,000 postings on the tiny tables' plans, ~2,000 after an analyze; a
window of 3,000 transactions ~60,000).

The order is the same as by any other path (effective time, then the entry's seq, ties included): paged through with
cursors, the pages give every entry of the tenant once, in that order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from history import POSTINGS_SPACED as POST
from routine_helpers import NO_AUTOVACUUM, RequestSession, new_account, new_ledger

from cell.store import entries
from cell.store.db import INDEX_PLANS, _init_connection

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
TIE = AT + timedelta(seconds=30)  # when TIED postings are all effective (a day's, dated at midnight)
TIED = 40
GROWTH = 20_000  # postings before the first and after the last of the start, written after the plans are made


async def test_a_page_of_entries_by_effective_time_reads_its_rows_whatever_the_history(make_database, monkeypatch):
    monkeypatch.setattr(entries, "TRANSACTIONS_READ_BY_IDS_MAX", 2)  # the windows and pending below: more than that
    url = make_database("entries_by_time_reads")
    owner = await asyncpg.connect(url)
    try:
        await owner.execute(NO_AUTOVACUUM)
        await _init_connection(owner)
        tenant, ledger = await new_ledger(owner)
        pair = [(await new_account(owner, "debit", tenant=tenant, ledger=ledger)).id for _ in range(2)]
        await owner.execute(POST, tenant, ledger, AT, pair, 20, 1, "posted")
        await owner.execute(POST, tenant, ledger, TIE, pair, TIED, 0, "posted")
        await owner.execute(POST, tenant, ledger, AT + timedelta(milliseconds=500), pair, 3, 1, "pending")
        elsewhere, elsewhere_ledger = await new_ledger(owner)
        theirs = [(await new_account(owner, "debit", tenant=elsewhere, ledger=elsewhere_ledger)).id for _ in range(2)]
        await owner.execute(POST, elsewhere, elsewhere_ledger, AT, theirs, 20, 1, "posted")
        third = await owner.fetchrow("SELECT effective_at, seq FROM ledger_entries WHERE tenant_id = $1 "
                                     "ORDER BY effective_at, seq OFFSET 2 LIMIT 1", tenant)
        await owner.execute("ANALYZE")
        page = {"limit": 5, "order_by": "effective_at"}
        window = [("gte", AT + timedelta(seconds=5)), ("lt", AT + timedelta(seconds=15))]  # 10 transactions
        reads = {
            "first": lambda c: entries.list_page(c, tenant, descending=False, after=None, **page),
            "last": lambda c: entries.list_page(c, tenant, descending=True, after=None, **page),
            "from_a_cursor": lambda c: entries.list_page(c, tenant, descending=False, after=tuple(third), **page),
            "back_from_a_cursor": lambda c: entries.list_page(c, tenant, descending=True, after=tuple(third), **page),
            "window": lambda c: entries.list_page(c, tenant, descending=False, after=None, effective_at=window,
                                                  **page),
            "window_last": lambda c: entries.list_page(c, tenant, descending=True, after=None, effective_at=window,
                                                       **page),
            "debits": lambda c: entries.list_page(c, tenant, descending=False, after=None, direction="debit", **page),
            "pending": lambda c: entries.list_page(c, tenant, descending=False, after=None, status="pending", **page),
            "tied": lambda c: entries.list_page(c, tenant, descending=False, after=None,
                                                effective_at=[("gte", TIE)], **page),
        }
        session = await RequestSession.open(url, tenant, INDEX_PLANS)
        for _ in range(6):  # the plans are made here (a generic plan from the sixth run on)
            before = {name: await session.buffers(read) for name, read in reads.items()}
        await owner.execute(POST, tenant, ledger, AT - timedelta(days=1), pair, GROWTH, -1, "posted")
        await owner.execute(POST, tenant, ledger, AT + timedelta(days=1), pair, GROWTH, 1, "posted")
        await owner.execute(POST, elsewhere, elsewhere_ledger, AT, theirs, GROWTH, 1, "posted")
        grown = {name: await session.buffers(read) - before[name] for name, read in reads.items()}
        # Measured: at most ~60 more (the same rows, indexes a level deeper), the tied entries' page ~260 (all of them
        # read, each a level deeper); every entry sorted is ~730,000.
        assert max(n for name, n in grown.items() if name != "tied") < 100, grown
        assert grown["tied"] < 10 * TIED, grown
        await owner.execute("ANALYZE")  # the statistics of the tables as they are now: every plan is made again
        for _ in range(6):
            analyzed = {name: await session.buffers(read) for name, read in reads.items()}
        # Measured: 64-82, the tied entries' page ~820 (each read whole); every entry sorted ~2,000.
        assert max(n for name, n in analyzed.items() if name != "tied") < 200, analyzed
        assert analyzed["tied"] < 25 * TIED, analyzed
        # The pages are the tenant's entries in order (effective time, then seq), each once, however they are read.
        for descending in (False, True):
            direction = "DESC" if descending else "ASC"
            wanted = [r["id"] for r in await owner.fetch(
                f"SELECT id FROM ledger_entries WHERE tenant_id = $1 AND effective_at >= $2 AND effective_at < $3 "
                f"ORDER BY effective_at {direction}, seq {direction}", tenant, AT - timedelta(seconds=10),
                TIE + timedelta(seconds=10))]
            listed, after = [], None
            while found := await entries.list_page(
                    session.conn, tenant, descending=descending, after=after, limit=7, order_by="effective_at",
                    effective_at=[("gte", AT - timedelta(seconds=10)), ("lt", TIE + timedelta(seconds=10))]):
                listed += [row["id"] for row in found]
                after = (found[-1]["effective_at"], found[-1]["seq"])
            assert listed == wanted
            assert len(wanted) == 2 * (20 + TIED + 3)
        await session.conn.close()
    finally:
        await owner.close()
