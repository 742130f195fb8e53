"""Ledger accounts' SQL, wrapped once: insert with the balance row, facts, balance reads, update, list."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from cell.ledger.models import Account
from cell.store import categories
from cell.store.categories import IN_CATEGORY
from cell.store.filters import OPERATORS_SQL, Where, at_most, own_rows
from cell.store.queries import Q

# The amounts ledger_balances computes (columns of lb), by the name the API filters on.
_AMOUNT_COLUMN = {"pending_balance_amount": "lb.pending_amount", "posted_balance_amount": "lb.posted_amount",
                  "available_balance_amount": "lb.available_amount"}
# An account (a) joined with its balance row (b) and the amounts computed from it (lb).
_WITH_BALANCES = ("JOIN account_balances b ON b.account_id = a.id CROSS JOIN LATERAL ledger_balances(a.normal_balance, "
                  "b.pending_debits, b.pending_credits, b.posted_debits, b.posted_credits) lb")
# A category of at most this many accounts, or a metadata filter matching at most this many, has them read by id
# for a list of accounts.
READ_BY_IDS_MAX = 1000


async def insert(conn: asyncpg.Connection, account_id: uuid.UUID, tenant_id: str, *, ledger_id: uuid.UUID, name: str,
                 description: str | None, normal_balance: str, currency: str, currency_exponent: int,
                 metadata: dict, sync_only: bool, external_id: str | None = None, ledgerable_type: str | None = None,
                 ledgerable_id: str | None = None) -> asyncpg.Record:
    return await conn.fetchrow(Q["insert_account"], account_id, tenant_id, ledger_id, name, description,
                               normal_balance, currency, currency_exponent, metadata, sync_only, external_id,
                               ledgerable_type, ledgerable_id)


async def fetch(conn: asyncpg.Connection, tenant_id: str, account_id, *,
                including_unapplied: bool = False) -> asyncpg.Record | None:
    query = Q["fetch_account_including_unapplied" if including_unapplied else "fetch_account"]
    return await conn.fetchrow(query, tenant_id, account_id)


async def lock_row(conn: asyncpg.Connection, tenant_id: str, account_id) -> None:
    """Hold the live account's row until the caller's transaction ends (a PATCH, before it reads what it merges)."""
    await conn.execute(Q["lock_account_row"], tenant_id, account_id)


async def fetch_current(conn: asyncpg.Connection, tenant_id: str, account_ids: list) -> list[asyncpg.Record]:
    """`fetch`'s rows (current balances) of many accounts in one statement, in no particular order; none for an id
    that is not the tenant's account."""
    return await conn.fetch(Q["fetch_accounts_current"], tenant_id, account_ids)


async def facts(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, ids: list[str]) -> list[Account]:
    return [Account(str(r["id"]), str(r["ledger_id"]), r["currency"], r["currency_exponent"], r["normal_balance"])
            for r in await conn.fetch(Q["fetch_account_facts"], tenant_id, ids)]


async def balances_at_lock_version(conn: asyncpg.Connection, account: asyncpg.Record,
                                   version: int) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["balances_at_lock_version"], account["id"], version, account["normal_balance"])


async def balances_at_effective_time(conn: asyncpg.Connection, account: asyncpg.Record, at: datetime,
                                     inclusive: bool = True) -> asyncpg.Record:
    return await conn.fetchrow(Q["balances_at_effective_time"], account["id"], at, account["normal_balance"],
                               inclusive)


async def balances_in_effective_range(conn: asyncpg.Connection, account: asyncpg.Record, lower: datetime | None,
                                      upper: datetime | None) -> asyncpg.Record:
    return await conn.fetchrow(Q["balances_in_effective_range"], account["id"], lower, upper,
                               account["normal_balance"])


async def has_entries(conn: asyncpg.Connection, tenant_id: str, account_id) -> bool:
    return await conn.fetchval(Q["account_has_entries"], tenant_id, account_id)


async def in_use(conn: asyncpg.Connection, tenant_id: str, account_id) -> bool:
    return await conn.fetchval(Q["account_in_use"], tenant_id, account_id)


async def discard(conn: asyncpg.Connection, tenant_id: str, account_id) -> asyncpg.Record | None:
    """Its discarded_at and updated_at; None when it is discarded already."""
    return await conn.fetchrow(Q["discard_account"], tenant_id, account_id)


async def update(conn: asyncpg.Connection, tenant_id: str, account_id, *, name: str | None, description_set: bool,
                 description: str | None, metadata: dict | None, sync_only: bool | None,
                 external_id_set: bool = False, external_id: str | None = None) -> None:
    await conn.execute(Q["update_account"], tenant_id, account_id, name, description_set, description, metadata,
                       sync_only, external_id_set, external_id)


def _narrow(named: set | None, ids) -> set:
    """The accounts named so far (None: no filter named any) and also among `ids`."""
    return set(ids) if named is None else named & set(ids)


async def list_page(conn: asyncpg.Connection, tenant_id: str, *, after_seq: int, limit: int, ledger_id=None,
                    currency=None, category_id=None, metadata=None, balance_filters: list[tuple[str, str, int]] = (),
                    ids=(), names=(), external_id=None, normal_balance=None, created_at=(), updated_at=()) -> list:
    """A page of accounts in seq order with their balances, read for the page's rows only. The accounts a category
    holds or a metadata filter matches, when at most READ_BY_IDS_MAX, are read by id (a walk of the tenant's
    accounts for them cost ~5 buffers an account on plans made while the tables were tiny, and for metadata with any
    plan: row-level security keeps `@>` off the metadata index); more, by that walk, which then finds a page soon.
    Accounts named by id, or by external id (one a ledger, by its unique index: 0203), are read by id too."""
    w = Where(tenant_id)
    w.clauses.append("a.discarded_at IS NULL")  # a discarded account (0204) is not found
    accounts = "ledger_accounts"
    named = set(ids) if ids else None  # the ids of the accounts the filters name, when few
    if external_id is not None:
        named = _narrow(named, [r["id"] for r in await conn.fetch(Q["account_ids_by_external_id"], tenant_id,
                                                                  external_id)])
    if category_id is not None:
        members = await categories.reached(conn, tenant_id, category_id, READ_BY_IDS_MAX)
        if members is not None:
            named = _narrow(named, members)
        else:
            w.add("a.id " + IN_CATEGORY, category_id)
    if metadata:
        matching = await at_most(conn, "SELECT ledger_accounts_matching($1, $2::jsonb, $3)", tenant_id, metadata,
                                 most=READ_BY_IDS_MAX)
        if matching is not None:
            named = _narrow(named, matching)
        else:
            w.add("a.metadata @> {}::jsonb", metadata)
    if named is not None:
        accounts = own_rows(accounts, [f"id = ANY({w.bind(sorted(named))}::uuid[])"])
    w.add("a.seq > {}", after_seq)
    if ledger_id is not None:
        w.add("a.ledger_id = {}", ledger_id)
    if currency is not None:
        w.add("a.currency = {}", currency)
    if names:
        w.add("a.name = ANY({}::text[])", list(names))
    if normal_balance is not None:
        w.add("a.normal_balance = {}", normal_balance)
    for column, bounds in (("a.created_at", created_at), ("a.updated_at", updated_at)):
        for op, value in bounds:
            w.add(f"{column} {OPERATORS_SQL[op]} {{}}", value)
    for field, op, value in balance_filters:
        w.add(f"{_AMOUNT_COLUMN[field]} {OPERATORS_SQL[op]} {{}}::numeric", value)
    limit_ref = w.bind(limit)
    source = f"{accounts} a" + (f" {_WITH_BALANCES}" if balance_filters else "")
    return await conn.fetch(
        "SELECT a.seq, a.id, a.ledger_id, a.name, a.description, a.normal_balance, a.currency, a.currency_exponent, "
        "a.metadata, a.sync_only, a.external_id, a.ledgerable_type, a.ledgerable_id, a.created_at, a.updated_at, "
        "b.pending_debits, b.pending_credits, b.posted_debits, b.posted_credits, b.lock_version, lb.* "
        f"FROM (SELECT a.* FROM {source} WHERE a.tenant_id = $1{w.sql()} ORDER BY a.seq LIMIT {limit_ref}) a "
        f"{_WITH_BALANCES} ORDER BY a.seq", *w.args)
