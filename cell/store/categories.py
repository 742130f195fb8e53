"""Ledger account categories' SQL, wrapped once: the category rows, the graph (memberships, edges), its closure
and the category balance reads."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from cell.store.filters import Where, at_most, own_rows
from cell.store.queries import Q

_COLUMNS = ("c.seq, c.id, c.ledger_id, c.name, c.description, c.external_id, c.normal_balance, c.currency, "
            "c.currency_exponent, c.metadata, c.created_at, c.updated_at, c.discarded_at")
_CLOSURE = ("ARRAY(SELECT r.account_id FROM ledger_account_category_closure r "
            "WHERE r.category_id = c.id AND r.reachable)")


def _select(w: Where, at: datetime | None, inclusive: bool, categories: str = "ledger_account_categories") -> str:
    """Categories (of `categories`) with the running sums of their accounts (current, or as of effective time `at`,
    entries at `at` counted when `inclusive`) and the amounts ledger_balances computes from them under the category's
    normal balance."""
    sums = ("ledger_category_sums(c.id)" if at is None
            else f"ledger_balances_at({_CLOSURE}, {w.bind(at)}, {w.bind(inclusive)})")
    return (f"SELECT {_COLUMNS}, s.pending_debits, s.pending_credits, s.posted_debits, s.posted_credits, lb.* "
            f"FROM {categories} c CROSS JOIN LATERAL {sums} s "
            "CROSS JOIN LATERAL ledger_balances(c.normal_balance, s.pending_debits, s.pending_credits, "
            "s.posted_debits, s.posted_credits) lb ")


async def insert(conn: asyncpg.Connection, category_id: uuid.UUID, tenant_id: str, *, ledger_id: uuid.UUID,
                 name: str, description: str | None, external_id: str | None, normal_balance: str, currency: str,
                 currency_exponent: int, metadata: dict) -> None:
    await conn.execute(Q["insert_category"], category_id, tenant_id, ledger_id, name, description, external_id,
                       normal_balance, currency, currency_exponent, metadata)


async def fetch(conn: asyncpg.Connection, tenant_id: str, category_id, *, at: datetime | None = None,
                inclusive: bool = True, discarded: bool = False) -> asyncpg.Record | None:
    """A category with its balances; a discarded one only when `discarded`."""
    w = Where(tenant_id)
    w.add("c.id = {}", category_id)
    if not discarded:
        w.clauses.append("c.discarded_at IS NULL")
    return await conn.fetchrow(_select(w, at, inclusive) + f"WHERE c.tenant_id = $1{w.sql()}", *w.args)


async def fetch_row(conn: asyncpg.Connection, tenant_id: str, category_id) -> asyncpg.Record | None:
    """A live category without its balances, its row locked until the caller's transaction ends (a PATCH's)."""
    return await conn.fetchrow(Q["fetch_category_row"], tenant_id, category_id)


async def facts(conn: asyncpg.Connection, tenant_id: str, ids: list) -> dict[uuid.UUID, asyncpg.Record]:
    return {r["id"]: r for r in await conn.fetch(Q["fetch_category_facts"], tenant_id, list(ids))}


async def update(conn: asyncpg.Connection, tenant_id: str, category_id, *, name: str | None, description_set: bool,
                 description: str | None, external_id_set: bool, external_id: str | None,
                 metadata: dict | None) -> None:
    await conn.execute(Q["update_category"], tenant_id, category_id, name, description_set, description,
                       external_id_set, external_id, metadata)


async def discard(conn: asyncpg.Connection, tenant_id: str, category_id) -> bool:
    return await conn.fetchval(Q["discard_category"], tenant_id, category_id) is not None


async def lock_graph(conn: asyncpg.Connection, ledger_id: uuid.UUID) -> None:
    await conn.execute(Q["lock_category_graph"], ledger_id)


async def ancestors(conn: asyncpg.Connection, category_id: uuid.UUID) -> list[uuid.UUID]:
    """The category and every category above it."""
    return await conn.fetchval(Q["category_ancestors"], category_id)


async def reach(conn: asyncpg.Connection, category_id: uuid.UUID) -> list[uuid.UUID]:
    """The accounts reachable from the category (its closure)."""
    return await conn.fetchval(Q["category_reach"], category_id)


async def add_member(conn: asyncpg.Connection, tenant_id: str, category_id, account_id) -> bool:
    return await conn.fetchval(Q["add_member"], category_id, account_id, tenant_id) is not None


async def remove_members(conn: asyncpg.Connection, category_id, account_ids: list | None) -> list[uuid.UUID]:
    """End the live memberships of these accounts (None: of all) in the category; the accounts that left."""
    return [r["account_id"] for r in await conn.fetch(Q["remove_members"], category_id, account_ids)]


async def add_edge(conn: asyncpg.Connection, tenant_id: str, parent_id, child_id) -> bool:
    return await conn.fetchval(Q["add_edge"], parent_id, child_id, tenant_id) is not None


async def remove_edge(conn: asyncpg.Connection, parent_id, child_id) -> bool:
    return bool(await conn.fetch(Q["remove_edges"], parent_id, child_id, None))


async def remove_edges_of(conn: asyncpg.Connection, category_id) -> list[asyncpg.Record]:
    """End every live edge into or out of the category."""
    return await conn.fetch(Q["remove_edges"], None, None, category_id)


async def refresh(conn: asyncpg.Connection, tenant_id: str, categories: list, accounts: list) -> int:
    """Make the closure of `categories` x `accounts` what the graph says (routine ledger_category_refresh)."""
    if not categories or not accounts:
        return 0
    return await conn.fetchval(Q["refresh_closure"], tenant_id, list(categories), list(accounts))


async def list_page(conn: asyncpg.Connection, tenant_id: str, *, after_seq: int, limit: int,
                    at: datetime | None = None, inclusive: bool = True, ids=(), ledger_id=None, currency=None,
                    name=None, external_id=None, metadata=None, ledger_account_id=None, parent_id=None) -> list:
    """A page of categories, their sums computed for the page's rows only (a filter met after them summed every
    category it passed)."""
    w = Where(tenant_id)
    named = []  # the few categories reaching an account, or in a parent: read by id, not a walk of the tenant's
    if ledger_account_id is not None:
        named.append("id = ANY (ARRAY(SELECT r.category_id FROM ledger_account_category_closure r "
                     f"WHERE r.account_id = {w.bind(ledger_account_id)} AND r.reachable))")
    if parent_id is not None:
        named.append("id = ANY (ARRAY(SELECT e.child_id FROM ledger_account_category_edges e "
                     f"WHERE e.parent_id = {w.bind(parent_id)} AND e.removed_at IS NULL))")
    categories = own_rows("ledger_account_categories", named)
    w.clauses.append("c.discarded_at IS NULL")
    w.add("c.seq > {}", after_seq)
    if ids:
        w.add("c.id = ANY({}::uuid[])", list(ids))
    for column, value in (("ledger_id", ledger_id), ("currency", currency), ("name", name),
                          ("external_id", external_id)):
        if value is not None:
            w.add(f"c.{column} = {{}}", value)
    if metadata:
        w.add("c.metadata @> {}::jsonb", metadata)
    limit_ref = w.bind(limit)
    page = f"(SELECT * FROM {categories} c WHERE c.tenant_id = $1{w.sql()} ORDER BY c.seq LIMIT {limit_ref})"
    return await conn.fetch(_select(w, at, inclusive, page) + "ORDER BY c.seq", *w.args)


# A list filter's condition on an account id column: the category (the {} placeholder) reaches the account.
IN_CATEGORY = ("IN (SELECT r.account_id FROM ledger_account_category_closure r "
               "WHERE r.category_id = {} AND r.reachable)")


async def reached(conn: asyncpg.Connection, tenant_id: str, category_id, most: int) -> list[uuid.UUID] | None:
    """The accounts `category_id` reaches, when at most `most` (one bounded probe of its closure); None when more
    (a list then takes IN_CATEGORY)."""
    return await at_most(conn, "SELECT r.account_id FROM ledger_account_category_closure r "
                         "WHERE r.category_id = $1 AND r.reachable AND r.tenant_id = $2 LIMIT $3",
                         category_id, tenant_id, most=most)
