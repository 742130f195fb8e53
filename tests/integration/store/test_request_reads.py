"""The API's reads (a resource, a list filtered by account or transaction, balances at a time) read what they return,
whatever the tenant's and the cell's other rows grow to, in the request sessions (db.INDEX_PLANS). asyncpg keeps a
statement prepared for five minutes and PostgreSQL its generic plan until the next analyze; made on a new cell's tables
analyzed while tiny, the default planner's plans scanned whole tables for one row (GET of a transaction: ~3,500 buffers
at 20,000 more postings of the tenant's other accounts and 20,000 of another tenant's).

Filters no index answers (a transaction's status posted) read the tenant's rows with any plan and are not here (an
external id, with or without its ledger, walked them before migration 0194: 460-510 more; metadata before 0195: ~460, an
entry's metadata before 0196: ~40,900, a transaction changed since a time before 0197: ~480, one posted since a time
before that probe: ~460, an entry changed since a time before store.changes: ~40,900, entries effective in a window, no
account named, before their transactions were probed: 902, by effective time 80,385; pending transactions before 0201:
465, by effective time 486, and their entries 120,938, by effective time 200,428). A page of one account's transactions
walked the tenant's transactions in the page's order, for a few rows, before they were read by id
(entries.READ_BY_IDS_MAX: ~80,500 more, newest first or by effective time), a category's with any plan (~120,500, and
~900 for its entries; a category of 200 accounts ~160,500) and a busy category's ~60,900 (now by its accounts' ids); a
busy category's entries by effective time ~160,900 (its accounts' every entry sorted; now a page of each account's,
merged)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import asyncpg
import pytest
from history import POSTINGS_SPACED
from routine_helpers import (
    NO_AUTOVACUUM,
    RequestSession,
    new_account,
    new_category,
    new_ledger,
)

from cell.store import (
    accounts,
    changes,
    entries,
    events,
    settlements,
    statements,
    transactions,
)
from cell.store.db import INDEX_PLANS, _init_connection

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
EARLY = AT - timedelta(days=2)  # when a few postings were effective (a window of them, no account named)
LATER = datetime(2099, 1, 1, tzinfo=UTC)  # when a transaction was posted (polls for those posted or changed since)
WIDE = 200  # a category's accounts: more than entries.READ_BY_IDS_MAX, at most entries.CATEGORY_ACCOUNTS_MAX
GROWTH = 20_000  # postings of the tenant's other accounts, and of another tenant, written after the plans are made
POST = ("SELECT ledger_post($1, NULL, '\\x00', gen_random_uuid(), $2, 'd', 'posted', $3, NULL, '{}', NULL,"
        " ARRAY[gen_random_uuid(), gen_random_uuid()], $4, ARRAY['debit', 'credit'], ARRAY[5, 5]::bigint[],"
        " '{}'::uuid[], '[]', '{}') FROM generate_series(1, $5)")
TAGGED = POST.replace("'{}') FROM", "'{}', p_entry_metadata => $6) FROM")  # entries with metadata ($6: one each)
OVERRIDE = ("INSERT INTO ledger_entry_metadata (entry_id, tenant_id, metadata, updated_at)"  # PATCH of an entry
            " SELECT id, tenant_id, $2, now() FROM ledger_entries WHERE id = $1")
def reads(tenant: str, ledger: uuid.UUID, account: uuid.UUID, hot: uuid.UUID, txn: uuid.UUID,
          statement: uuid.UUID, settlement: uuid.UUID, category: uuid.UUID, busy: uuid.UUID,
          wide: uuid.UUID, crowd: uuid.UUID) -> dict:
    """The reads under test, each of at most 5 rows, which the tenant has from the start (`hot`: the account
    every later posting of the tenant debits; `statement` and `settlement`: of `account`, before them; `category`
    reaches `account`, `busy` reaches `hot`, `wide` WIDE accounts, a few with a posting)."""
    debit = {"id": account, "normal_balance": "debit"}
    page = {"limit": 5, "after": None}
    return {
        "transaction": lambda c: transactions.fetch_many(c, tenant, [txn]),
        "transaction_entries": lambda c: entries.of_transactions(c, tenant, [txn]),
        "entry": lambda c: entries.fetch(c, tenant, uuid.uuid4()),
        "entries_of_account": lambda c: entries.list_page(c, tenant, order_by="seq", descending=False,
                                                          ledger_account_id=account, **page),
        "entries_of_account_newest_first": lambda c: entries.list_page(c, tenant, order_by="seq", descending=True,
                                                                       ledger_account_id=account, **page),
        "entries_of_account_by_effective_at": lambda c: entries.list_page(
            c, tenant, order_by="effective_at", descending=True, ledger_account_id=account, effective_at=[("gte", AT)],
            **page),
        "entries_of_account_at_lock_version": lambda c: entries.list_page(
            c, tenant, order_by="seq", descending=False, ledger_account_id=account, as_of_lock_version=2, **page),
        "entries_of_account_with_metadata": lambda c: entries.list_page(
            c, tenant, order_by="seq", descending=False, ledger_account_id=account, metadata={"k": "v"}, **page),
        "entries_with_metadata": lambda c: entries.list_page(c, tenant, order_by="seq", descending=True,
                                                             metadata={"k": "v"}, **page),
        "entries_of_statement": lambda c: entries.list_page(c, tenant, order_by="seq", descending=False,
                                                            statement_id=statement, **page),
        "statement": lambda c: statements.fetch(c, tenant, statement),
        "versions_of_statement": lambda c: transactions.list_versions_page(c, tenant, after_seq=0, limit=5,
                                                                          statement_id=statement),
        "entries_of_settlement": lambda c: entries.list_page(c, tenant, order_by="seq", descending=False,
                                                             settlement_id=settlement, **page),
        "transactions_of_settlement": lambda c: transactions.list_page(c, tenant, settlement_id=settlement, **page),
        "entries_of_transaction": lambda c: entries.list_page(c, tenant, order_by="seq", descending=False,
                                                              ledger_transaction_id=txn, **page),
        "entries": lambda c: entries.list_page(c, tenant, order_by="seq", descending=False, **page),
        "transactions": lambda c: transactions.list_page(c, tenant, **page),
        "transactions_effective_in_a_window": lambda c: transactions.list_page(
            c, tenant, descending=True, effective_at=[("gte", EARLY), ("lt", EARLY + timedelta(hours=1))], **page),
        "entries_effective_in_a_window": lambda c: entries.list_page(
            c, tenant, order_by="seq", descending=True, effective_at=[("gte", EARLY), ("lt", EARLY + timedelta(hours=1))],
            **page),
        "entries_effective_before_by_effective_at": lambda c: entries.list_page(
            c, tenant, order_by="effective_at", descending=True, effective_at=[("lt", EARLY + timedelta(hours=1))],
            **page),
        "transactions_pending": lambda c: transactions.list_page(c, tenant, status=["pending"], **page),
        "transactions_pending_newest_first": lambda c: transactions.list_page(c, tenant, descending=True,
                                                                              status=["pending"], **page),
        "transactions_not_posted_by_effective_at": lambda c: transactions.list_page(
            c, tenant, order_by="effective_at", descending=True, status=["pending", "archived"], **page),
        "entries_pending": lambda c: entries.list_page(c, tenant, order_by="seq", descending=True, status="pending",
                                                       **page),
        "entries_pending_by_effective_at": lambda c: entries.list_page(c, tenant, order_by="effective_at",
                                                                       descending=False, status="pending", **page),
        "transactions_of_ledger": lambda c: transactions.list_page(c, tenant, ledger_id=ledger, **page),
        "transactions_of_external_id": lambda c: transactions.list_page(c, tenant, external_id="ext-1", **page),
        "transactions_of_external_id_in_ledger": lambda c: transactions.list_page(c, tenant, external_id="ext-1",
                                                                                  ledger_id=ledger, **page),
        "transactions_by_effective_at": lambda c: transactions.list_page(c, tenant, order_by="effective_at",
                                                                         descending=True, **page),
        "transactions_of_account": lambda c: transactions.list_page(c, tenant, descending=True,
                                                                    ledger_account_id=account, **page),
        "transactions_of_account_by_effective_at": lambda c: transactions.list_page(
            c, tenant, order_by="effective_at", descending=True, ledger_account_id=account, **page),
        "transactions_with_metadata": lambda c: transactions.list_page(c, tenant, descending=True,
                                                                       metadata={"k": "v"}, **page),
        "transactions_updated_since": lambda c: transactions.list_page(c, tenant, updated_at=[("gte", LATER)],
                                                                       **page),
        "entries_changed_since": lambda c: entries.list_page(c, tenant, order_by="seq", descending=False,
                                                             updated_at=[("gte", LATER)], **page),
        "transactions_posted_since": lambda c: transactions.list_page(c, tenant, posted_at=[("gte", LATER)], **page),
        "transactions_of_category": lambda c: transactions.list_page(c, tenant, descending=True,
                                                                     category_id=category, **page),
        "transactions_of_busy_category": lambda c: transactions.list_page(c, tenant, descending=True,
                                                                          category_id=busy, **page),
        "entries_of_category": lambda c: entries.list_page(c, tenant, order_by="seq", descending=True,
                                                           category_id=category, **page),
        "transactions_of_wide_category": lambda c: transactions.list_page(c, tenant, descending=True,
                                                                          category_id=wide, **page),
        "entries_of_wide_category": lambda c: entries.list_page(c, tenant, order_by="seq", descending=True,
                                                                category_id=wide, **page),
        "entries_of_busy_category": lambda c: entries.list_page(c, tenant, order_by="seq", descending=True,
                                                                category_id=busy, **page),
        "entries_of_busy_category_by_effective_at": lambda c: entries.list_page(
            c, tenant, order_by="effective_at", descending=True, category_id=busy, **page),
        "entries_of_crowded_category_by_effective_at": lambda c: entries.list_page(
            c, tenant, order_by="effective_at", descending=True, category_id=crowd, **page),
        "entries_of_crowded_category": lambda c: entries.list_page(c, tenant, order_by="seq", descending=True,
                                                                   category_id=crowd, **page),
        "transactions_of_hot_account_by_effective_at": lambda c: transactions.list_page(
            c, tenant, order_by="effective_at", descending=True, ledger_account_id=hot, **page),
        "versions": lambda c: transactions.list_versions_page(c, tenant, after_seq=0, limit=5),
        "versions_of_transaction": lambda c: transactions.list_versions_page(c, tenant, after_seq=0, limit=5,
                                                                            ledger_transaction_id=txn),
        "events": lambda c: events.list_page(c, tenant, after_position=0, limit=5),
        "events_of_transaction": lambda c: events.list_page(c, tenant, after_position=0, limit=5, entity_id=txn),
        "account": lambda c: accounts.fetch(c, tenant, account),
        "account_with_queued_effects": lambda c: accounts.fetch(c, tenant, account, including_unapplied=True),
        "balances_at_effective_time": lambda c: accounts.balances_at_effective_time(c, debit, AT),
        "balances_in_effective_range": lambda c: accounts.balances_in_effective_range(c, debit, AT, None),
        "balances_at_lock_version": lambda c: accounts.balances_at_lock_version(c, debit, 2),
    }


@pytest.mark.parametrize("more_accounts", [0, 50])  # the tenant's accounts beside these three, a posting each
async def test_the_requests_reads_read_as_much_after_a_long_history_as_before_any(make_database, more_accounts):
    url = make_database(f"request_reads_{more_accounts}")
    owner = await asyncpg.connect(url)
    try:
        await owner.execute(NO_AUTOVACUUM)
        tenant, ledger = await new_ledger(owner)
        mine, hot, other = [(await new_account(owner, "debit", tenant=tenant, ledger=ledger)).id for _ in range(3)]
        elsewhere, elsewhere_ledger = await new_ledger(owner)
        theirs = [(await new_account(owner, "debit", tenant=elsewhere, ledger=elsewhere_ledger)).id for _ in range(2)]
        await owner.execute(POST, tenant, ledger, AT, [mine, other], 5)
        await owner.execute(POST, tenant, ledger, AT, [hot, other], 5)
        await owner.execute("INSERT INTO events (id, tenant_id, resource, event_name, entity_id, data, event_time, txid,"
                            " position) SELECT gen_random_uuid(), $1, 'ledger_transaction', 'created',"
                            " gen_random_uuid(), '{}', now(), '1'::xid8, g FROM generate_series(1, 5) g", tenant)
        for _ in range(more_accounts):
            await owner.execute(POST, tenant, ledger, AT, [(await new_account(owner, "debit", tenant=tenant,
                                                                              ledger=ledger)).id, other], 1)
        txn = await owner.fetchval("SELECT transaction_id FROM ledger_entries WHERE ledger_account_id = $1 LIMIT 1",
                                   mine)
        await owner.execute("UPDATE ledger_transactions SET external_id = 'ext-1', metadata = '{\"k\": \"v\"}',"
                            " posted_at = $2, updated_at = $2 WHERE id = $1", txn, LATER)
        await owner.execute(TAGGED, tenant, ledger, AT, [other, other], 1, '[{"k": "v"}, {}]')
        await owner.execute(POST, tenant, ledger, EARLY, [other, other], 2)
        await owner.execute(POST.replace("'posted'", "'pending'"), tenant, ledger, AT, [other, other], 2)
        await owner.execute(OVERRIDE, await owner.fetchval("SELECT id FROM ledger_entries WHERE ledger_account_id = $1"
                                                           " AND metadata = '{}' LIMIT 1", other), '{"k": "v"}')
        await owner.execute("UPDATE ledger_entry_metadata SET updated_at = $1", LATER)  # that PATCH, later
        await _init_connection(owner)
        statement = uuid.uuid4()
        settlement = uuid.uuid4()
        async with owner.transaction():
            await statements.insert(owner, statement, tenant, ledger_account_id=mine, description=None, metadata={},
                                    lower=AT - timedelta(days=1), upper=AT + timedelta(days=1))
            await settlements.insert(owner, settlement, tenant, ledger_id=ledger, settled_id=mine, contra_id=other,
                                     currency="USD", currency_exponent=2, status="pending",
                                     allow_either_direction=True, upper=AT + timedelta(days=1), description=None,
                                     metadata={})
            assert await settlements.claim_gathered(owner, tenant, settlement, mine, AT + timedelta(days=1), 10) == 5
        category, busy = [await new_category(owner, tenant, ledger, [a]) for a in (mine, hot)]
        many = [(await new_account(owner, "debit", tenant=tenant, ledger=ledger)).id for _ in range(WIDE)]
        for a in many[:5]:
            await owner.execute(POST, tenant, ledger, AT, [a, other], 1)
        wide = await new_category(owner, tenant, ledger, many)
        crowd = await new_category(owner, tenant, ledger, [hot, *many[5:13]])  # more than merged a page each
        await owner.execute("ANALYZE")
        probes = reads(tenant, ledger, mine, hot, txn, statement, settlement, category, busy, wide, crowd)
        sessions = {"requests": await RequestSession.open(url, tenant, INDEX_PLANS),
                    "default_planner": await RequestSession.open(url, tenant, {})}
        before = {}
        for name, session in sessions.items():
            for _ in range(6):  # the plans are made here (a generic plan from the sixth run on)
                found = {probe: await session.buffers(read) for probe, read in probes.items()}
            before[name] = found
        await owner.execute(POSTINGS_SPACED, tenant, ledger, AT, [hot, other], GROWTH, 0, "posted")
        await owner.execute(POSTINGS_SPACED, elsewhere, elsewhere_ledger, AT, theirs, GROWTH, 0, "posted")
        await owner.execute("INSERT INTO events (id, tenant_id, resource, event_name, entity_id, data, event_time, txid,"
                            " position) SELECT gen_random_uuid(), t, 'ledger_transaction', 'created',"
                            " gen_random_uuid(), '{}', now(), '1'::xid8, g FROM generate_series(6, 5 + $1) g,"
                            " unnest(ARRAY[$2, $3]) t", GROWTH, tenant, elsewhere)
        grown = {name: {probe: await session.buffers(read) - before[name][probe] for probe, read in probes.items()}
                 for name, session in sessions.items()}
        # Measured: at most ~50 more (the same rows, each index a level deeper); a walk of a table is hundreds.
        probed = ("transactions_of_busy_category", "transactions_of_hot_account_by_effective_at")
        narrow = {probe: n for probe, n in grown["requests"].items()
                  if "wide" not in probe and "crowd" not in probe and probe not in probed}
        assert max(narrow.values()) < 60, grown["requests"]
        # A busy account's transactions, first probed (measured: 103-110 more, its first ACCOUNTS_READ_BY_IDS_MAX
        # entries read), then walked (test_account_transactions_reads: a quiet account's).
        assert max(grown["requests"][probe] for probe in probed) < 200, grown["requests"]
        # A category of 9 accounts, one of them busy: a page of each account's (measured: 135 more, the busy one's 5
        # rows and each account's index; before, 160,818 by effective time: every entry of the busy account sorted).
        assert max(n for probe, n in grown["requests"].items() if "crowd" in probe) < 300, grown["requests"]
        # A category of WIDE accounts: its closure and its accounts' entries probed first, ~3 buffers an account
        # (measured at 200 accounts, 5 with a posting: 23-49 more; before, by its closure, ~160,500 more for its
        # transactions).
        assert max(grown["requests"].values()) < 5 * WIDE, grown["requests"]
        # What the requests' sessions had before (measured: 700-4,300 more each).
        # (A transaction's entries no longer: since 0206 their read also names the entries that are the transaction's,
        # and the default planner's plan for it walks in one of the two histories only, 12 against 3,637 buffers.)
        walked = ("transaction", "entry", "entries_of_transaction", "entries_of_statement",
                  "versions_of_statement", "entries_of_settlement", "transactions_of_settlement", "events",
                  "balances_at_effective_time", "account_with_queued_effects")
        assert all(grown["default_planner"][probe] > 300 for probe in walked), grown["default_planner"]
        await owner.execute("ANALYZE")  # the statistics of the tables as they are now: every plan is made again
        for _ in range(6):
            analyzed = {probe: await sessions["requests"].buffers(read) for probe, read in probes.items()}
        # No walk either (measured: 2-112 buffers; a statement's 5 entries cost ~20 each, its function and the rows).
        assert max(n for probe, n in analyzed.items() if "wide" not in probe) < 200, analyzed
        assert max(analyzed.values()) < 5 * WIDE, analyzed  # measured: 126-186 (before: ~160,500)
        for session in sessions.values():
            await session.conn.close()
    finally:
        await owner.close()



@pytest.fixture(scope="module")
async def listed_books(make_database):
    """The rows the listing test below reads, written once for all its parametrizations (each only reads them)."""
    url = make_database("account_transactions")
    owner = await asyncpg.connect(url)
    try:
        tenant, ledger = await new_ledger(owner)
        mine, yours, other = [(await new_account(owner, "debit", tenant=tenant, ledger=ledger)).id for _ in range(3)]
        for day in range(6):  # the account's 4 transactions (one of them twice in it) between others, dates apart
            at = AT - timedelta(days=day % 3)
            await owner.execute(POST, tenant, ledger, at, [other, other] if day % 3 == 1 else [mine, other], 1)
            await owner.execute(POST, tenant, ledger, at, [yours, other] if day % 2 else [other, other], 1)
        await owner.execute(POST, tenant, ledger, AT, [mine, mine], 1)
        await owner.execute(POST, tenant, ledger, AT, [mine, yours], 1)
        category = await new_category(owner, tenant, ledger, [mine, yours])
        elsewhere, elsewhere_ledger = await new_ledger(owner)
        theirs = [(await new_account(owner, "debit", tenant=elsewhere, ledger=elsewhere_ledger)).id for _ in range(2)]
        await owner.execute(POST, elsewhere, elsewhere_ledger, AT, theirs, 3)
        # 6 entries whose metadata has the order o-1: 4 of 5 as written (one edited to another order since), one
        # that had o-2 and one that had none, edited to have it; another tenant's entry with it.
        written = await owner.fetchval("SELECT clock_timestamp()")  # what is written or changed since: 11 entries
        await owner.execute(TAGGED, tenant, ledger, AT, [other, other], 2,
                            '[{"order": "o-1"}, {"order": "o-1", "kind": "card"}]')
        await owner.execute(TAGGED, tenant, ledger, AT, [other, other], 1, '[{"order": "o-2"}, {"order": "o-1"}]')
        await owner.execute(TAGGED, elsewhere, elsewhere_ledger, AT, theirs, 1, '[{"order": "o-1"}, {}]')
        tagged_entry = "SELECT id FROM ledger_entries WHERE tenant_id = $1 AND metadata = $2 ORDER BY seq LIMIT 1"
        for had, has in (('{"order": "o-1"}', '{"order": "o-9"}'), ('{"order": "o-2"}', '{"order": "o-1", "x": "y"}'),
                         ('{}', '{"order": "o-1"}')):
            await owner.execute(OVERRIDE, await owner.fetchval(tagged_entry, tenant, had), has)
        tagged = "UPDATE ledger_transactions SET metadata = $2 WHERE id IN (SELECT id FROM ledger_transactions" \
                 " WHERE tenant_id = $1 ORDER BY seq LIMIT 3 OFFSET $3)"  # 3 of each tenant's, one more key on some
        await owner.execute(tagged, tenant, '{"order": "o-1"}', 2)
        await owner.execute(tagged, tenant, '{"order": "o-1", "kind": "card"}', 8)
        await owner.execute(tagged, tenant, '{"order": "o-2"}', 5)
        await owner.execute(tagged, elsewhere, '{"order": "o-1"}', 0)
        changed = "UPDATE ledger_transactions SET updated_at = $2 WHERE id IN (SELECT id FROM ledger_transactions" \
                  " WHERE tenant_id = $1 ORDER BY seq LIMIT $4 OFFSET $3)"  # 6 of the tenant's changed since LATER
        for offset, count, at in ((1, 2, LATER), (4, 3, LATER + timedelta(days=1)), (9, 1, LATER),
                                  (10, 1, LATER - timedelta(seconds=1))):
            await owner.execute(changed, tenant, at, offset, count)
        await owner.execute(changed, elsewhere, LATER, 0, 1)
        await owner.execute("UPDATE ledger_transactions SET posted_at = updated_at - interval '1 hour' WHERE "
                            "updated_at >= $1", LATER - timedelta(seconds=1))  # 3 posted since LATER, 3 just before
        await owner.execute("UPDATE ledger_transactions SET posted_at = updated_at WHERE id = (SELECT id FROM "
                            "ledger_transactions WHERE tenant_id = $1 ORDER BY seq OFFSET 9 LIMIT 1)", tenant)  # at it
        await owner.execute(POST.replace("'posted'", "'pending'"), tenant, ledger, AT, [mine, other], 2)  # adjacent
    finally:
        await owner.close()
    return SimpleNamespace(url=url, tenant=tenant, mine=mine, yours=yours, category=category, elsewhere=elsewhere,
                           theirs=theirs, written=written)


# By id; a category's by its accounts (its entries: merged from a page of each, or by a walk for them); entries by
# their transactions' effective time; walks.
@pytest.mark.parametrize("by_ids_max", [entries.READ_BY_IDS_MAX, 3, 2, 1])
@pytest.mark.parametrize(("order_by", "descending"), [("seq", False), ("seq", True), ("effective_at", True),
                                                     ("effective_at", False)])
async def test_transactions_and_entries_named_by_account_category_or_metadata_are_listed_alike_read_by_id_or_not(
        listed_books, monkeypatch, by_ids_max, order_by, descending):
    monkeypatch.setattr(entries, "READ_BY_IDS_MAX", by_ids_max)
    monkeypatch.setattr(transactions, "ACCOUNTS_READ_BY_IDS_MAX", by_ids_max)  # an account's, a category's: so too
    monkeypatch.setattr(entries, "CATEGORY_ACCOUNTS_MAX", by_ids_max)  # the category's 2 accounts: probed or not
    monkeypatch.setattr(entries, "CATEGORY_MERGED_ACCOUNTS_MAX", by_ids_max - 1)  # merged (3), or pages in one branch (2)
    monkeypatch.setattr(transactions, "METADATA_READ_BY_IDS_MAX", by_ids_max * 3)  # 6 matching: by id, or a walk
    monkeypatch.setattr(entries, "METADATA_READ_BY_IDS_MAX", by_ids_max * 3)  # likewise 6 entries
    monkeypatch.setattr(changes, "READ_BY_IDS_MAX", by_ids_max * 3)  # and 6 transactions changed since
    monkeypatch.setattr(entries, "TRANSACTIONS_READ_BY_IDS_MAX", by_ids_max * 3)  # 4 and 8 in a window, 2 pending
    b = listed_books
    url, tenant, mine, yours, category, elsewhere, theirs, written = (
        b.url, b.tenant, b.mine, b.yours, b.category, b.elsewhere, b.theirs, b.written)
    owner = await asyncpg.connect(url)
    try:
        direction = "DESC" if descending else "ASC"
        order = f"effective_at {direction}, seq {direction}" if order_by == "effective_at" else f"seq {direction}"
        of = "SELECT e.{} FROM ledger_entries e WHERE e.ledger_account_id = ANY($1::uuid[])"
        wanted = {
            "account": await owner.fetch(f"SELECT id FROM ledger_transactions WHERE id IN "
                                         f"({of.format('transaction_id')}) ORDER BY {order}", [mine]),
            "category": await owner.fetch(f"SELECT id FROM ledger_transactions WHERE id IN "
                                          f"({of.format('transaction_id')}) ORDER BY {order}", [mine, yours]),
            "category_entries": await owner.fetch(f"SELECT id FROM ledger_entries WHERE id IN ({of.format('id')})"
                                                  f" ORDER BY {order}", [mine, yours]),
            "metadata": await owner.fetch("SELECT id FROM ledger_transactions WHERE tenant_id = $1 AND metadata @> "
                                          f"'{{\"order\": \"o-1\"}}' ORDER BY {order}", tenant),
            "metadata_entries": await owner.fetch(
                "SELECT id FROM ledger_entries WHERE id IN (SELECT e.id FROM ledger_entries e LEFT JOIN "
                "ledger_entry_metadata m ON m.entry_id = e.id WHERE e.tenant_id = $1 AND coalesce(m.metadata, "
                f"e.metadata) @> '{{\"order\": \"o-1\"}}') ORDER BY {order}", tenant)}
        wanted["updated"] = await owner.fetch("SELECT id FROM ledger_transactions WHERE tenant_id = $1 AND "
                                              f"updated_at >= $2 ORDER BY {order}", tenant, LATER)
        wanted["posted"] = await owner.fetch("SELECT id FROM ledger_transactions WHERE tenant_id = $1 AND "
                                             f"posted_at >= $2 ORDER BY {order}", tenant, LATER)
        wanted["changed_entries"] = await owner.fetch(
            "SELECT id FROM ledger_entries WHERE id IN (SELECT e.id FROM ledger_entries e LEFT JOIN ledger_entry_metadata"
            f" m ON m.entry_id = e.id WHERE e.tenant_id = $1 AND coalesce(m.updated_at, e.created_at) >= $2) ORDER BY {order}",
            tenant, written)
        wanted["category_posted"] = await owner.fetch(
            f"SELECT id FROM ledger_entries WHERE id IN ({of.format('id')} AND EXISTS (SELECT 1 FROM "
            f"ledger_transactions t WHERE t.id = e.transaction_id AND t.status = 'posted')) ORDER BY {order}",
            [mine, yours])
        wanted["category_debits"] = await owner.fetch(f"SELECT id FROM ledger_entries WHERE id IN ({of.format('id')}"
                                                      f" AND e.direction = 'debit') ORDER BY {order}", [mine, yours])
        wanted["category_changed"] = wanted["category_entries"]  # every one changed (was written) in ten years
        wanted["effective_entries"] = await owner.fetch(
            "SELECT id FROM ledger_entries WHERE tenant_id = $1 AND effective_at >= $2 AND effective_at < $3 "
            f"ORDER BY {order}", tenant, AT - timedelta(days=1), AT)
        wanted["effective_earlier_debits"] = await owner.fetch(
            "SELECT id FROM ledger_entries WHERE tenant_id = $1 AND effective_at < $2 AND direction = 'debit' "
            f"ORDER BY {order}", tenant, AT)
        wanted["pending"] = await owner.fetch("SELECT id FROM ledger_transactions WHERE tenant_id = $1 AND "
                                              f"status = 'pending' ORDER BY {order}", tenant)
        wanted["not_posted"] = wanted["pending"]  # none archived
        pending_entries = ("SELECT id FROM ledger_entries WHERE id IN (SELECT e.id FROM ledger_entries e JOIN "
                           "ledger_transactions t ON t.id = e.transaction_id WHERE e.tenant_id = $1 AND t.status = "
                           "'pending' AND e.effective_at >= $2) ORDER BY {}")
        wanted["pending_entries"] = await owner.fetch(pending_entries.format(order), tenant, AT - timedelta(days=3650))
        wanted["pending_entries_since"] = await owner.fetch(pending_entries.format(order), tenant, AT)
        wanted["all_entries"] = await owner.fetch(
            f"SELECT id FROM ledger_entries WHERE tenant_id = $1 ORDER BY {order}", tenant)
        wanted["posted_credits"] = await owner.fetch(
            "SELECT id FROM ledger_entries WHERE id IN (SELECT e.id FROM ledger_entries e JOIN ledger_transactions t "
            "ON t.id = e.transaction_id WHERE e.tenant_id = $1 AND t.status = 'posted' AND e.direction = 'credit') "
            f"ORDER BY {order}", tenant)
        wanted["account_entries"] = await owner.fetch(f"{of.format('id')} ORDER BY {order}", [mine])
        assert [len(rows) for rows in wanted.values()] == [8, 11, 13, 6, 6, 6, 4, 11, 11, 11, 13, 8, 8, 2, 2, 4, 4,
                                                           38, 17, 9]
        session = await RequestSession.open(url, tenant, INDEX_PLANS)
        lists = {"account": (transactions.list_page, {"ledger_account_id": mine}),
                 "category": (transactions.list_page, {"category_id": category}),
                 "category_entries": (entries.list_page, {"category_id": category}),
                 "metadata": (transactions.list_page, {"metadata": {"order": "o-1"}}),
                 "metadata_entries": (entries.list_page, {"metadata": {"order": "o-1"}}),
                 "updated": (transactions.list_page, {"updated_at": [("gte", LATER)]}),
                 "posted": (transactions.list_page, {"posted_at": [("gte", LATER)], "status": ["posted"]}),
                 "changed_entries": (entries.list_page, {"updated_at": [("gte", written)]}),
                 "category_posted": (entries.list_page, {"category_id": category, "status": "posted"}),
                 "category_debits": (entries.list_page, {"category_id": category, "direction": "debit"}),
                 "category_changed": (entries.list_page, {"category_id": category,
                                                          "updated_at": [("gte", AT - timedelta(days=3650))]}),
                 "effective_entries": (entries.list_page, {"effective_at": [("gte", AT - timedelta(days=1)),
                                                                            ("lt", AT)]}),
                 "effective_earlier_debits": (entries.list_page, {"effective_at": [("lt", AT)],
                                                                  "direction": "debit"}),
                 "pending": (transactions.list_page, {"status": ["pending"]}),
                 "not_posted": (transactions.list_page, {"status": ["archived", "pending"]}),
                 "pending_entries": (entries.list_page, {"status": "pending"}),
                 "pending_entries_since": (entries.list_page, {"status": "pending", "effective_at": [("gte", AT)]}),
                 "all_entries": (entries.list_page, {}),
                 "posted_credits": (entries.list_page, {"status": "posted", "direction": "credit"}),
                 "account_entries": (entries.list_page, {"ledger_account_id": mine})}
        for name, (list_page, given) in lists.items():
            listed, after = [], None
            while page := await list_page(session.conn, tenant, order_by=order_by, descending=descending, after=after,
                                          limit=2, **given):
                listed += [row["id"] for row in page]
                after = (page[-1]["effective_at"], page[-1]["seq"]) if order_by == "effective_at" \
                    else (page[-1]["seq"],)
            assert listed == [r["id"] for r in wanted[name]], name
        # another tenant's account: none of its transactions; with a filter none of them meets, none
        assert await transactions.list_page(session.conn, tenant, ledger_account_id=theirs[0], after=None,
                                            limit=2) == []
        assert await transactions.list_page(session.conn, tenant, ledger_account_id=mine, ledger_id=uuid.uuid4(),
                                            after=None, limit=2) == []
        assert await entries.list_page(session.conn, tenant, category_id=category, direction="credit",
                                       ledger_transaction_id=uuid.uuid4(), order_by="seq", descending=False,
                                       after=None, limit=2) == []
        assert await transactions.list_page(session.conn, tenant, metadata={"order": "o-1", "kind": "card"},
                                            after=None, limit=9) == await transactions.list_page(
            session.conn, tenant, metadata={"kind": "card"}, after=None, limit=9)
        assert len(await transactions.list_page(session.conn, tenant, metadata={"order": "o-3"}, after=None,
                                                limit=2)) == 0
        window = [("gte", LATER), ("lt", LATER + timedelta(hours=1))]  # the bounds of a window, both
        assert len(await transactions.list_page(session.conn, tenant, updated_at=window, after=None, limit=9)) == 3
        assert len(await entries.list_page(session.conn, tenant, metadata={"order": "o-1", "kind": "card"},
                                           order_by="seq", descending=False, after=None, limit=9)) == 2
        # The routines keep the policy's rule: a session acting for a tenant gets no other tenant's transactions or
        # entries, one acting for none gets nothing.
        routines = [f"SELECT ledger_{rows}_matching($1, $2::jsonb, 10)" for rows in ("transactions", "entries")]
        for matching in routines:
            assert await session.conn.fetch(matching, elsewhere, {"order": "o-1"}) == []
            assert len(await session.conn.fetch(matching, tenant, {"order": "o-1"})) == 6
        await session.conn.execute("SELECT set_config('ledger.tenant', '', false)")
        for matching in routines:
            assert await session.conn.fetch(matching, tenant, {"order": "o-1"}) == []
        await session.conn.close()
    finally:
        await owner.close()
