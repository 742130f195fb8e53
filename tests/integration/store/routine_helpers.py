"""Helpers of the routine tests: rows set up by plain SQL, and the error a statement raises."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg


async def raised(conn: asyncpg.Connection, query: str, *args) -> asyncpg.PostgresError | None:
    """The error a statement raises (rolled back to a savepoint, the test goes on), or None."""
    try:
        async with conn.transaction():
            await conn.execute(query, *args) if not args else await conn.fetch(query, *args)
    except asyncpg.PostgresError as exc:
        return exc
    return None


@dataclass
class Account:
    id: uuid.UUID
    tenant: str
    normal: str


async def new_ledger(conn: asyncpg.Connection, state: str = "active") -> tuple[str, uuid.UUID]:
    tenant, ledger = "t" + uuid.uuid4().hex[:12], uuid.uuid4()
    await conn.execute("INSERT INTO tenants (id, state) VALUES ($1, $2)", tenant, state)
    await conn.execute("INSERT INTO ledgers (id, tenant_id, name) VALUES ($1, $2, 'l')", ledger, tenant)
    return tenant, ledger


async def new_account(conn: asyncpg.Connection, normal: str = "credit", *, tenant: str | None = None,
                      ledger: uuid.UUID | None = None, pending_debits: int = 0, pending_credits: int = 0,
                      posted_debits: int = 0, posted_credits: int = 0, lock_version: int = 0,
                      sync_only: bool = False) -> Account:
    """An account whose balance row holds the given totals (no effects behind them: the routine under test
    reads the row, and these tests never run the invariants' verifier)."""
    if tenant is None:
        tenant, ledger = await new_ledger(conn)
    account = uuid.uuid4()
    await conn.execute(
        "INSERT INTO ledger_accounts (id, tenant_id, ledger_id, name, normal_balance, currency, currency_exponent,"
        " sync_only) VALUES ($1, $2, $3, 'a', $4, 'USD', 2, $5)", account, tenant, ledger, normal, sync_only)
    await conn.execute(
        "INSERT INTO account_balances (account_id, tenant_id, pending_debits, pending_credits, posted_debits,"
        " posted_credits, lock_version) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        account, tenant, pending_debits, pending_credits, posted_debits, posted_credits, lock_version)
    return Account(account, tenant, normal)
