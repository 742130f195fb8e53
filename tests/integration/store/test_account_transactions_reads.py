"""A page of an account's transactions (`GET /api/ledger_transactions?ledger_account_id=`, newest first or by
effective time), the account of more entries than entries.READ_BY_IDS_MAX and at most
transactions.ACCOUNTS_READ_BY_IDS_MAX (a customer's wallet of a few hundred postings), none of them recent: read by
id after one probe of the account's entries, whatever the tenant posted since, in the request sessions
(db.INDEX_PLANS), on plans made before and after an analyze. Before, the tenant's transactions were walked from the
newest, each one's entries probed for the account, until a page of the account's was found: ~60,500 buffers at
20,000 later postings of other accounts, with either plan (a wallet quiet for a while, in a tenant of millions of
postings: the statement bound, a 503). Its entries newest first, by its own index: on a plan made while the tables
were tiny the tenant's entries were walked from the newest (892 buffers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from history import POSTINGS_SPACED as POST
from routine_helpers import NO_AUTOVACUUM, RequestSession, new_account, new_ledger

from cell.store import entries, transactions
from cell.store.db import INDEX_PLANS, _init_connection

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
QUIET = 150  # the account's postings: more than entries.READ_BY_IDS_MAX
GROWTH = 20_000  # the tenant's postings of other accounts after the account's, written after the plans are made


async def test_a_page_of_a_quiet_accounts_transactions_or_entries_reads_its_own_not_the_tenants(make_database):
    url = make_database("account_transactions_reads")
    owner = await asyncpg.connect(url)
    try:
        await owner.execute(NO_AUTOVACUUM)
        await _init_connection(owner)
        tenant, ledger = await new_ledger(owner)
        quiet, busy, other = [(await new_account(owner, "debit", tenant=tenant, ledger=ledger)).id for _ in range(3)]
        await owner.execute(POST, tenant, ledger, AT, [quiet, other], QUIET, 1, "posted")
        await owner.execute(POST, tenant, ledger, AT, [busy, other], 20, 1, "posted")
        await owner.execute("ANALYZE")
        page = {"limit": 5, "after": None, "ledger_account_id": quiet, "descending": True}
        reads = {
            "newest": lambda c: transactions.list_page(c, tenant, **page),
            "by_effective_time": lambda c: transactions.list_page(c, tenant, order_by="effective_at", **page),
            "entries": lambda c: entries.list_page(c, tenant, order_by="created_at", **page),  # as the API names it
            "entries_by_effective_time": lambda c: entries.list_page(c, tenant, order_by="effective_at", **page),
        }
        session = await RequestSession.open(url, tenant, INDEX_PLANS)
        for _ in range(6):  # the plans are made here (a generic plan from the sixth run on)
            before = {name: await session.buffers(read) for name, read in reads.items()}
        await owner.execute(POST, tenant, ledger, AT + timedelta(days=1), [busy, other], GROWTH, 1, "posted")
        grown = {name: await session.buffers(read) - before[name] for name, read in reads.items()}
        # Measured: 117-163 more (the account's transactions, by their random ids each on a leaf page of their own
        # now), its entries 6-8.
        assert max(grown.values()) < 2 * QUIET, grown
        await owner.execute("ANALYZE")  # the statistics of the tables as they are now: every plan is made again
        for _ in range(6):
            analyzed = {name: await session.buffers(read) for name, read in reads.items()}
        assert max(analyzed.values()) < 3 * QUIET, analyzed  # measured: 130-153 (its entries 46)
        wanted = await owner.fetch("SELECT id FROM ledger_transactions WHERE id IN (SELECT transaction_id FROM "
                                   "ledger_entries WHERE ledger_account_id = $1) ORDER BY seq DESC LIMIT 5", quiet)
        assert [r["id"] for r in await reads["newest"](session.conn)] == [r["id"] for r in wanted]
        await session.conn.close()
    finally:
        await owner.close()
