"""Use cases of ledger accounts: create (with its balance row), read balances (total, effective-time,
lock-version, read-your-writes), update, delete (discard), list with balance filters."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
from msgspec import UNSET

from cell.ledger.commands import AccountCreate, AccountUpdate, currency_exponent
from cell.ledger.errors import InvalidRequest, NotFound, PostingRejected
from cell.ledger.models import Account, IdemKey
from cell.service import categories, events, views
from cell.service.common import Page, merge_metadata, seq_page, unchanged
from cell.service.context import CellContext
from cell.service.ledgers import create_idempotently, discard_exclusively
from cell.store import accounts as store
from cell.store import ledgers as store_ledgers
from cell.store import tenants as store_tenants


class BalanceQuery:
    """Which balances a read asks for: current (default), at an effective time (entries at exactly that time
    counted), at the end of a day (`day_end`: the next midnight, entries at it not counted), a time range, a lock
    version."""

    def __init__(self, effective_at: datetime | None = None, lower: datetime | None = None,
                 upper: datetime | None = None, as_of_lock_version: int | None = None,
                 include_unapplied: bool = False, day_end: datetime | None = None) -> None:
        chosen = (sum(x is not None for x in (effective_at, as_of_lock_version, day_end))
                  + (lower is not None or upper is not None))
        if chosen > 1:
            raise InvalidRequest("use one of balances[effective_at], balances[as_of_date], "
                                 "balances[effective_at_lower_bound]/[effective_at_upper_bound] or "
                                 "balances[as_of_lock_version]", "conflicting_parameters")
        if include_unapplied and chosen:
            raise InvalidRequest("balances[include_unapplied] applies to current balances only",
                                 "conflicting_parameters")
        if lower is not None and upper is not None and lower > upper:
            raise InvalidRequest("effective_at_lower_bound is after effective_at_upper_bound", "invalid_range")
        self.effective_at = effective_at if day_end is None else day_end
        self.inclusive = day_end is None
        self.lower = lower
        self.upper = upper
        self.as_of_lock_version = as_of_lock_version
        self.include_unapplied = include_unapplied
        # The current applied balances (no parameter): what BalanceReads reads.
        self.current = not (chosen or include_unapplied)


CURRENT = BalanceQuery()


async def account_by_id(conn: asyncpg.Connection, tenant_id: str, account_id) -> views.LedgerAccount | None:
    """An account as GET renders it, on the caller's connection; None when there is none."""
    try:
        return await _account(conn, tenant_id, account_id)
    except NotFound:
        return None


async def _account(conn: asyncpg.Connection, tenant_id: str, account_id, q: BalanceQuery = CURRENT
                   ) -> views.LedgerAccount:
    row = await store.fetch(conn, tenant_id, account_id, including_unapplied=q.include_unapplied)
    if row is None:
        raise NotFound(f"ledger account {account_id} not found")
    if q.as_of_lock_version is not None:
        sums = await store.balances_at_lock_version(conn, row, q.as_of_lock_version)
        if sums is None:
            raise InvalidRequest(f"the account has no lock_version {q.as_of_lock_version} (current: "
                                 f"{row['lock_version']})", "lock_version_not_found")
        return views.account(row, sums, sums["lock_version"])
    return await _with_balances(conn, row, q)


async def _with_balances(conn: asyncpg.Connection, row: asyncpg.Record, q: BalanceQuery) -> views.LedgerAccount:
    """An account row with the balances `q` asks for, other than as of a lock version (current: the row's own)."""
    if q.effective_at is not None:
        return views.account(row, await store.balances_at_effective_time(conn, row, q.effective_at, q.inclusive))
    if q.lower is not None or q.upper is not None:
        return views.account(row, await store.balances_in_effective_range(conn, row, q.lower, q.upper), None,
                             q.lower, q.upper)
    return views.account(row)


async def create_account(ctx: CellContext, tenant_id: str, cmd: AccountCreate,
                         idem: IdemKey | None) -> views.LedgerAccount:
    exponent = currency_exponent(cmd.currency, cmd.currency_exponent)

    async def insert(conn: asyncpg.Connection, new_id: uuid.UUID) -> views.LedgerAccount:
        if not await store_ledgers.exists(conn, tenant_id, cmd.ledger_id):
            raise PostingRejected(f"ledger {cmd.ledger_id} not found", "ledger_not_found")
        row = await store.insert(conn, new_id, tenant_id, ledger_id=cmd.ledger_id, name=cmd.name,
                                 description=cmd.description, normal_balance=cmd.normal_balance,
                                 currency=cmd.currency, currency_exponent=exponent, metadata=cmd.metadata,
                                 sync_only=cmd.sync_only, external_id=cmd.external_id,
                                 ledgerable_type=cmd.ledgerable_type, ledgerable_id=cmd.ledgerable_id)
        account = Account(str(row["id"]), str(row["ledger_id"]), row["currency"], row["currency_exponent"],
                          row["normal_balance"])
        await categories.join_categories(conn, tenant_id, account, cmd.ledger_account_category_ids)
        ctx.cache.remember(tenant_id, account)
        view = views.account(row)
        await events.emit(ctx, conn, tenant_id, "ledger_account", "ledger_account.created", view)
        return view

    return await create_idempotently(ctx, tenant_id, idem, "ledger_account", views.LedgerAccount, insert,
                                     lambda conn, rid: _account(conn, tenant_id, rid))


async def get_account(ctx: CellContext, tenant_id: str, account_id: uuid.UUID,
                      q: BalanceQuery) -> views.LedgerAccount:
    if q.current:  # the hot read: with the others of its tenant that arrive together, in one statement
        row = await ctx.balance_reads.read(tenant_id, account_id)
        if row is None:
            raise NotFound(f"ledger account {account_id} not found")
        return views.account(row)
    return await ctx.run(lambda conn: _account(conn, tenant_id, account_id, q))


async def update_account(ctx: CellContext, tenant_id: str, account_id: uuid.UUID,
                         cmd: AccountUpdate) -> views.LedgerAccount:
    return await ctx.run(lambda conn: apply_update(ctx, conn, tenant_id, account_id, cmd))


async def apply_update(ctx: CellContext, conn: asyncpg.Connection, tenant_id: str, account_id: uuid.UUID,
                       cmd: AccountUpdate) -> views.LedgerAccount:
    """`update_account` on the caller's connection, in a database transaction of its own or inside the caller's (a
    bulk update's, which writes its result with it)."""
    async with conn.transaction():
        await store_tenants.fence(conn, tenant_id)
        await store.lock_row(conn, tenant_id, account_id)  # a PATCH at the same time merges after this one
        current = await store.fetch(conn, tenant_id, account_id)
        if current is None:
            raise NotFound(f"ledger account {account_id} not found")
        metadata = merge_metadata(current["metadata"], cmd.metadata)
        if unchanged(current, name=cmd.name, description=cmd.description, sync_only=cmd.sync_only,
                     external_id=cmd.external_id, metadata=UNSET if metadata is None else metadata):
            return views.account(current)  # a no-op PATCH writes nothing (updated_at kept)
        await store.update(conn, tenant_id, account_id, name=None if cmd.name is UNSET else cmd.name,
                           description_set=cmd.description is not UNSET,
                           description=None if cmd.description is UNSET else cmd.description,
                           metadata=metadata, sync_only=None if cmd.sync_only is UNSET else cmd.sync_only,
                           external_id_set=cmd.external_id is not UNSET,
                           external_id=None if cmd.external_id is UNSET else cmd.external_id)
        view = await _account(conn, tenant_id, account_id)
        await events.emit(ctx, conn, tenant_id, "ledger_account", "ledger_account.updated", view)
    return view


async def delete_account(ctx: CellContext, tenant_id: str, account_id: uuid.UUID) -> views.LedgerAccount:
    """Discards an account no entry was ever written to (0204): from then on it is not found (reads, lists,
    postings, categories, monitors, statements); one with entries is refused (its history and balances stay), as is
    one a live monitor watches, a live category holds or a drafting settlement names. Under
    the tenant's fence taken exclusively: a posting in flight that names the account is waited out (its entries are
    then seen, and the delete refused), and one after it finds the account discarded (ledger_post reads its
    accounts after its fence; a process that remembers the account is told by ledger_post, LG015)."""
    async def held(conn: asyncpg.Connection, tenant: str, account: uuid.UUID) -> bool:
        if await store.has_entries(conn, tenant, account):
            return True
        if await store.in_use(conn, tenant, account):  # they would name an account not found
            raise PostingRejected(f"ledger account {account_id} is watched by a balance monitor, held by a category or "
                                  "named by a drafting settlement: delete the monitor, remove it from the category and "
                                  "archive or settle the settlement first", "ledger_account_in_use")
        return False

    view = await discard_exclusively(
        ctx, tenant_id, account_id, resource="ledger_account", fetch=store.fetch, held=held,
        refusal=PostingRejected(f"ledger account {account_id} has entries: an account with a history is never "
                                "deleted", "ledger_account_has_entries"), discard=store.discard, render=views.account)
    ctx.cache.forget(tenant_id, str(account_id))
    return view


async def list_accounts(ctx: CellContext, tenant_id: str, *, after_cursor: str | None, per_page: int,
                        balances: BalanceQuery = CURRENT, **filters) -> Page[views.LedgerAccount]:
    """A page of accounts; their balances as `balances` asks (current, at an effective time or the end of a day, or
    over a range of effective time: then one bounded read of each account's, on the page's connection)."""
    if balances.current:
        return await seq_page(ctx, tenant_id, "ledger_accounts", after_cursor, per_page, views.account,
                              store.list_page, **filters)

    async def read(conn: asyncpg.Connection, tenant_id: str, **page) -> list[dict]:
        return [{"seq": row["seq"], "view": await _with_balances(conn, row, balances)}
                for row in await store.list_page(conn, tenant_id, **page)]

    return await seq_page(ctx, tenant_id, "ledger_accounts", after_cursor, per_page, lambda r: r["view"], read,
                          **filters)
