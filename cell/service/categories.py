"""Use cases of ledger account categories: create, read (current or effective-time balances), update, delete
(each with its event), list, and the graph: accounts and nested categories added and removed, the closure kept in
the same transaction."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
from msgspec import UNSET

from cell.ledger.commands import CategoryCreate, CategoryUpdate, currency_exponent
from cell.ledger.errors import NotFound, PostingRejected
from cell.ledger.models import Account, IdemKey
from cell.service import events, views
from cell.service.common import Page, merge_metadata, seq_page, unchanged
from cell.service.context import CellContext
from cell.service.ledgers import create_idempotently
from cell.store import categories as store
from cell.store import ledgers as store_ledgers
from cell.store import tenants as store_tenants

RESOURCE = "ledger_account_category"


class AsOf:
    """Which balances a category read asks for: current (None), or as of an effective time, inclusive of entries at
    exactly that time (exclusive for an `as_of_date`: the end of that UTC day)."""

    def __init__(self, at: datetime | None = None, inclusive: bool = True) -> None:
        self.at = at
        self.inclusive = inclusive


CURRENT = AsOf()


def _not_found(category_id) -> NotFound:
    return NotFound(f"ledger account category {category_id} not found")


async def _category(conn: asyncpg.Connection, tenant_id: str, category_id, as_of: AsOf = CURRENT, *,
                    discarded: bool = False) -> views.LedgerAccountCategory:
    row = await store.fetch(conn, tenant_id, category_id, at=as_of.at, inclusive=as_of.inclusive,
                            discarded=discarded)
    if row is None:
        raise _not_found(category_id)
    return views.category(row)


# -- the graph: every change runs inside a transaction that took the tenant fence --------------------------------


async def _locked(conn: asyncpg.Connection, tenant_id: str, ids: list[uuid.UUID], *, referenced: bool = False,
                  ledger_id: uuid.UUID | None = None) -> dict[uuid.UUID, asyncpg.Record]:
    """The live categories `ids`, read again under their ledger's graph lock (a concurrent delete is seen). A
    missing one is 404 for an id in the path, 422 for one a body refers to (`referenced`)."""
    found = await store.facts(conn, tenant_id, ids)
    ledgers = {ledger_id} if ledger_id is not None else {r["ledger_id"] for r in found.values()}
    for ledger in sorted(ledgers):  # one ledger in practice; sorted, should a caller ever pass two
        await store.lock_graph(conn, ledger)
    found = await store.facts(conn, tenant_id, ids)
    missing = [i for i in ids if i not in found]
    if missing:
        if referenced:
            raise PostingRejected(f"ledger account category {missing[0]} not found",
                                  "ledger_account_category_not_found")
        raise _not_found(missing[0])
    return found


def _check_same_books(category: asyncpg.Record, ledger_id, currency: str, exponent: int, what: str) -> None:
    """A category holds what is in its ledger and currency (at its exponent: its sums are in one minor unit)."""
    if category["ledger_id"] != uuid.UUID(str(ledger_id)):
        raise PostingRejected(f"{what} is in ledger {ledger_id}, the category {category['id']} in ledger "
                              f"{category['ledger_id']}", "category_ledger_mismatch")
    if (category["currency"], category["currency_exponent"]) != (currency, exponent):
        raise PostingRejected(f"{what} is in {currency} (exponent {exponent}), the category {category['id']} in "
                              f"{category['currency']} (exponent {category['currency_exponent']})",
                              "category_currency_mismatch")


async def _attach_account(conn: asyncpg.Connection, tenant_id: str, category: asyncpg.Record,
                          account: Account) -> None:
    _check_same_books(category, account.ledger_id, account.currency, account.currency_exponent,
                      f"ledger account {account.id}")
    if await store.add_member(conn, tenant_id, category["id"], uuid.UUID(account.id)):
        await store.refresh(conn, tenant_id, await store.ancestors(conn, category["id"]), [uuid.UUID(account.id)])


async def _nest(conn: asyncpg.Connection, tenant_id: str, parent: asyncpg.Record, child: asyncpg.Record) -> None:
    _check_same_books(parent, child["ledger_id"], child["currency"], child["currency_exponent"],
                      f"ledger account category {child['id']}")
    above = await store.ancestors(conn, parent["id"])
    if child["id"] in above:
        raise PostingRejected(f"nesting category {child['id']} in {parent['id']} would make a cycle",
                              "category_cycle")
    if await store.add_edge(conn, tenant_id, parent["id"], child["id"]):
        await store.refresh(conn, tenant_id, above, await store.reach(conn, child["id"]))


async def _write(ctx: CellContext, tenant_id: str, change) -> None:
    """One change to the graph in one transaction, behind the tenant fence."""
    async def work(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await store_tenants.fence(conn, tenant_id)
            await change(conn)

    await ctx.run(work)


async def add_account(ctx: CellContext, tenant_id: str, category_id: uuid.UUID, account_id: uuid.UUID) -> None:
    async def change(conn: asyncpg.Connection) -> None:
        category = (await _locked(conn, tenant_id, [category_id]))[category_id]
        account = (await ctx.cache.accounts(conn, tenant_id, [str(account_id)], fresh=True)).get(str(account_id))
        if account is None:
            raise NotFound(f"ledger account {account_id} not found")
        await _attach_account(conn, tenant_id, category, account)

    await _write(ctx, tenant_id, change)


async def remove_account(ctx: CellContext, tenant_id: str, category_id: uuid.UUID, account_id: uuid.UUID) -> None:
    """Removing an account the category does not hold directly changes nothing (a retried DELETE succeeds)."""
    async def change(conn: asyncpg.Connection) -> None:
        await _locked(conn, tenant_id, [category_id])
        if await ctx.cache.accounts(conn, tenant_id, [str(account_id)]) == {}:
            raise NotFound(f"ledger account {account_id} not found")
        if await store.remove_members(conn, category_id, [account_id]):
            await store.refresh(conn, tenant_id, await store.ancestors(conn, category_id), [account_id])

    await _write(ctx, tenant_id, change)


async def add_category(ctx: CellContext, tenant_id: str, parent_id: uuid.UUID, child_id: uuid.UUID) -> None:
    async def change(conn: asyncpg.Connection) -> None:
        found = await _locked(conn, tenant_id, [parent_id, child_id])
        await _nest(conn, tenant_id, found[parent_id], found[child_id])

    await _write(ctx, tenant_id, change)


async def remove_category(ctx: CellContext, tenant_id: str, parent_id: uuid.UUID, child_id: uuid.UUID) -> None:
    async def change(conn: asyncpg.Connection) -> None:
        await _locked(conn, tenant_id, [parent_id, child_id])
        if await store.remove_edge(conn, parent_id, child_id):
            await store.refresh(conn, tenant_id, await store.ancestors(conn, parent_id),
                                await store.reach(conn, child_id))

    await _write(ctx, tenant_id, change)


async def join_categories(conn: asyncpg.Connection, tenant_id: str, account: Account, ids: list[uuid.UUID]) -> None:
    """A new account joins `ids` (ledger_account_category_ids), in the transaction that creates it."""
    if ids:
        found = await _locked(conn, tenant_id, ids, referenced=True, ledger_id=uuid.UUID(account.ledger_id))
        for category_id in dict.fromkeys(ids):
            await _attach_account(conn, tenant_id, found[category_id], account)


# -- the categories themselves -----------------------------------------------------------------------------------


async def create_category(ctx: CellContext, tenant_id: str, cmd: CategoryCreate,
                          idem: IdemKey | None) -> views.LedgerAccountCategory:
    exponent = currency_exponent(cmd.currency, cmd.currency_exponent)

    async def insert(conn: asyncpg.Connection, new_id: uuid.UUID) -> views.LedgerAccountCategory:
        if not await store_ledgers.exists(conn, tenant_id, cmd.ledger_id):
            raise PostingRejected(f"ledger {cmd.ledger_id} not found", "ledger_not_found")
        await store.insert(conn, new_id, tenant_id, ledger_id=cmd.ledger_id, name=cmd.name,
                           description=cmd.description, external_id=cmd.external_id,
                           normal_balance=cmd.normal_balance, currency=cmd.currency, currency_exponent=exponent,
                           metadata=cmd.metadata)
        if cmd.ledger_account_category_ids:
            parents = await _locked(conn, tenant_id, [*cmd.ledger_account_category_ids, new_id], referenced=True,
                                    ledger_id=cmd.ledger_id)
            for parent_id in dict.fromkeys(cmd.ledger_account_category_ids):
                await _nest(conn, tenant_id, parents[parent_id], parents[new_id])
        view = await _category(conn, tenant_id, new_id)
        await events.emit(ctx, conn, tenant_id, RESOURCE, "ledger_account_category.created", view)
        return view

    return await create_idempotently(ctx, tenant_id, idem, "ledger_account_category", views.LedgerAccountCategory,
                                     insert, lambda conn, rid: _category(conn, tenant_id, rid, discarded=True))


async def get_category(ctx: CellContext, tenant_id: str, category_id: uuid.UUID,
                       as_of: AsOf = CURRENT) -> views.LedgerAccountCategory:
    return await ctx.run(lambda conn: _category(conn, tenant_id, category_id, as_of))


async def update_category(ctx: CellContext, tenant_id: str, category_id: uuid.UUID,
                          cmd: CategoryUpdate) -> views.LedgerAccountCategory:
    async def work(conn: asyncpg.Connection) -> views.LedgerAccountCategory:
        async with conn.transaction():
            await store_tenants.fence(conn, tenant_id)
            current = await store.fetch_row(conn, tenant_id, category_id)
            if current is None:
                raise _not_found(category_id)
            metadata = merge_metadata(current["metadata"], cmd.metadata)
            if unchanged(current, name=cmd.name, description=cmd.description, external_id=cmd.external_id,
                         metadata=UNSET if metadata is None else metadata):
                return await _category(conn, tenant_id, category_id)  # a no-op PATCH writes nothing: no event
            await store.update(conn, tenant_id, category_id, name=None if cmd.name is UNSET else cmd.name,
                               description_set=cmd.description is not UNSET,
                               description=None if cmd.description is UNSET else cmd.description,
                               external_id_set=cmd.external_id is not UNSET,
                               external_id=None if cmd.external_id is UNSET else cmd.external_id,
                               metadata=metadata)
            view = await _category(conn, tenant_id, category_id)
            await events.emit(ctx, conn, tenant_id, RESOURCE, "ledger_account_category.updated", view)
            return view

    return await ctx.run(work)


async def delete_category(ctx: CellContext, tenant_id: str, category_id: uuid.UUID) -> views.LedgerAccountCategory:
    """The category is discarded: it leaves every category it was in, its accounts and nested categories leave
    it, and the categories above it no longer reach through it."""
    async def work(conn: asyncpg.Connection) -> views.LedgerAccountCategory:
        async with conn.transaction():
            await store_tenants.fence(conn, tenant_id)
            await _locked(conn, tenant_id, [category_id])
            above = await store.ancestors(conn, category_id)
            reached = await store.reach(conn, category_id)
            await store.remove_edges_of(conn, category_id)
            await store.remove_members(conn, category_id, None)
            await store.discard(conn, tenant_id, category_id)
            await store.refresh(conn, tenant_id, above, reached)
            view = await _category(conn, tenant_id, category_id, discarded=True)
            await events.emit(ctx, conn, tenant_id, RESOURCE, "ledger_account_category.deleted", view)
        return view

    return await ctx.run(work)


async def list_categories(ctx: CellContext, tenant_id: str, *, after_cursor: str | None, per_page: int,
                          as_of: AsOf = CURRENT, **filters) -> Page[views.LedgerAccountCategory]:
    return await seq_page(ctx, tenant_id, "ledger_account_categories", after_cursor, per_page, views.category,
                          store.list_page, at=as_of.at, inclusive=as_of.inclusive, **filters)
