"""Helpers of the routine tests: rows set up by plain SQL, the error a statement raises, and a session that
reports the buffers each statement touches."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import asyncpg

from cell.store.db import _init_connection


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


async def new_category(conn: asyncpg.Connection, tenant: str, ledger: uuid.UUID, members: list) -> uuid.UUID:
    """A debit category that reaches `members` (its closure rows: no edges, no sums)."""
    category = uuid.uuid4()
    await conn.execute("INSERT INTO ledger_account_categories (id, tenant_id, ledger_id, name, normal_balance, currency,"
                       " currency_exponent) VALUES ($1, $2, $3, 'c', 'debit', 'USD', 2)", category, tenant, ledger)
    await conn.execute("INSERT INTO ledger_account_category_closure (category_id, account_id, tenant_id, reachable)"
                       " SELECT $1, a, $2, true FROM unnest($3::uuid[]) a", category, tenant, members)
    return category


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


# Every table's autovacuum off: no analyze makes new plans while a test measures what its plans read.
NO_AUTOVACUUM = ("DO $$ DECLARE t text; BEGIN FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                 "LOOP EXECUTE format('ALTER TABLE %I SET (autovacuum_enabled = off)', t); END LOOP; END $$")
EXPLAIN_EACH = ["LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0", "SET auto_explain.log_analyze = on",
                "SET auto_explain.log_buffers = on", "SET auto_explain.log_timing = off",
                "SET auto_explain.log_format = json", "SET auto_explain.log_level = notice"]


class RequestSession:
    """A request session as the API's pool makes it (the restricted role, the tenant set, these planner settings),
    reporting the shared buffers each statement it runs touches (auto_explain's notices)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn, self.plans = conn, []
        conn.add_log_listener(lambda _conn, message: self.plans.append(message.message))

    @classmethod
    async def open(cls, url: str, tenant: str, planner: dict[str, str]) -> RequestSession:
        conn = await asyncpg.connect(url, server_settings={"jit": "off", **planner})
        await _init_connection(conn)
        for statement in EXPLAIN_EACH:
            await conn.execute(statement)
        await conn.execute("SET ROLE ledger_app")
        await conn.execute("SELECT set_config('ledger.tenant', $1, false)", tenant)
        return cls(conn)

    async def buffers(self, read) -> int:
        self.plans.clear()
        await read(self.conn)
        total = 0
        for message in self.plans:
            top = json.loads(message[message.index("{"):])["Plan"]
            total += top["Shared Hit Blocks"] + top["Shared Read Blocks"]
        return total


async def new_deliveries(conn: asyncpg.Connection, tenant: str, endpoint, count: int, *, status: str = "pending",
                         due_since: str = "1 hour") -> set:
    """`count` deliveries of `endpoint` and their events, each its entity's only one, due since `due_since` (the
    later a millisecond apart): their ids."""
    rows = await conn.fetch(
        "WITH made AS (INSERT INTO events (id, tenant_id, resource, event_name, entity_id, data, position)"
        " SELECT gen_random_uuid(), $1, 'ledger_transaction', 'ledger_transaction.created', gen_random_uuid(), '{}',"
        " coalesce((SELECT max(position) FROM events WHERE tenant_id = $1), 0) + g FROM generate_series(1, $3) g"
        " RETURNING id, position, entity_id, event_name)"
        " INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event_position, entity_id, event_name,"
        " give_up_at, status, next_attempt_at) SELECT gen_random_uuid(), $1, $2, id, position, entity_id, event_name,"
        " now() + interval '1 day', $4, now() - $5::text::interval + position * interval '1 ms' FROM made"
        " RETURNING id", tenant, endpoint, count, status, due_since)
    return {r["id"] for r in rows}
