"""Row-level security (migration 0110): the cell's role sees and writes only the tenant its connection acts for,
even through a query that forgets the tenant condition; the workers' role sees every tenant."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from routine_helpers import new_account, new_ledger, raised

from cell.settings import load_settings as cell_settings
from cell.store.db import ACTING_TENANT, create_pool
from worker.settings import load_settings as worker_settings

# Tables with a tenant_id column left out of row-level security, each for the reason 0110 gives.
UNGUARDED = {"api_keys", "audit_links"}


async def _as(conn: asyncpg.Connection, role: str, tenant: str | None) -> None:
    """The rest of the test's transaction runs as `role`, acting for `tenant` (None: nothing set)."""
    await conn.execute(f"SET LOCAL ROLE {role}")
    if tenant is not None:
        await conn.execute("SELECT set_config('ledger.tenant', $1, true)", tenant)


async def _two_tenants(db: asyncpg.Connection):
    a = await new_account(db)
    b = await new_account(db)
    return a, b


async def test_the_cell_role_sees_only_its_tenant_through_a_query_without_the_tenant_condition(db):
    a, b = await _two_tenants(db)
    await _as(db, "ledger_app", a.tenant)
    assert {r["tenant_id"] for r in await db.fetch("SELECT tenant_id FROM ledgers")} == {a.tenant}
    assert {r["id"] for r in await db.fetch("SELECT id FROM ledger_accounts")} == {a.id}
    assert await db.fetchval("SELECT count(*) FROM account_balances WHERE account_id = $1", b.id) == 0
    # Writes of the other tenant's rows find nothing to change.
    assert await db.execute("UPDATE ledger_accounts SET name = 'x' WHERE id = $1", b.id) == "UPDATE 0"


async def test_the_cell_role_cannot_insert_a_row_for_another_tenant(db):
    a, b = await _two_tenants(db)
    await _as(db, "ledger_app", a.tenant)
    error = await raised(db, "INSERT INTO ledgers (id, tenant_id, name) VALUES ($1, $2, 'l')", uuid.uuid4(), b.tenant)
    assert isinstance(error, asyncpg.InsufficientPrivilegeError), error
    assert "row-level security" in str(error)
    assert await raised(db, "INSERT INTO ledgers (id, tenant_id, name) VALUES ($1, $2, 'l')",
                        uuid.uuid4(), a.tenant) is None


async def test_the_cell_role_acting_for_no_tenant_sees_nothing(db):
    await _two_tenants(db)
    await _as(db, "ledger_app", None)
    assert await db.fetchval("SELECT count(*) FROM ledger_accounts") == 0
    assert await db.fetchval("SELECT count(*) FROM ledgers") == 0
    await db.execute("SELECT set_config('ledger.tenant', '', true)")
    assert await db.fetchval("SELECT count(*) FROM account_balances") == 0


async def test_the_workers_role_sees_every_tenant(db):
    a, b = await _two_tenants(db)
    await _as(db, "ledger_worker", None)
    assert {a.id, b.id} <= {r["id"] for r in await db.fetch("SELECT id FROM ledger_accounts")}


async def test_the_roles_are_neither_owner_nor_superuser_nor_bypass_rls(db):
    assert cell_settings(("CELL_TEST_UNUSED_",)).db_role == "ledger_app"
    assert cell_settings(("CELL_TEST_UNUSED_",)).db_background_role == "ledger_worker"
    assert worker_settings({}, ()).db_role == "ledger_worker"
    roles = await db.fetch("SELECT rolname, rolsuper, rolbypassrls, rolcanlogin FROM pg_roles "
                           "WHERE rolname IN ('ledger_app', 'ledger_worker')")
    assert len(roles) == 2
    for role in roles:
        assert not role["rolsuper"] and not role["rolbypassrls"] and not role["rolcanlogin"], dict(role)
    owned = await db.fetch("SELECT relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                           "WHERE r.rolname IN ('ledger_app', 'ledger_worker')")
    assert owned == []


async def test_every_table_with_a_tenant_id_is_guarded(db):
    """A later table with tenant_id needs 0110's three policies (or a reason in UNGUARDED)."""
    rows = await db.fetch(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
        " array(SELECT p.polname FROM pg_policy p WHERE p.polrelid = c.oid ORDER BY 1) AS policies"
        " FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped"
        " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')")
    unguarded = {r["relname"] for r in rows if not (r["relrowsecurity"] and r["relforcerowsecurity"]
                                                    and {"tenant_isolation", "cross_tenant", "owner_all"}
                                                    <= set(r["policies"]))}
    assert unguarded == UNGUARDED
    assert len(rows) > 20


@pytest.fixture
async def two_tenants_committed(routines_database_url):
    conn = await asyncpg.connect(routines_database_url)
    try:
        yield [(await new_ledger(conn)) for _ in range(2)]
    finally:
        await conn.close()


async def test_a_pooled_connection_acts_for_the_tenant_of_the_task_that_acquires_it(routines_database_url,
                                                                                      two_tenants_committed):
    (a, ledger_a), (b, ledger_b) = two_tenants_committed
    pool = await create_pool(routines_database_url, min_size=1, max_size=1, role="ledger_app")
    try:
        query = "SELECT id FROM ledgers WHERE id = ANY($1::uuid[])"
        both = [ledger_a, ledger_b]
        for tenant, ledger in ((a, ledger_a), (b, ledger_b), (a, ledger_a)):  # one connection, reused
            token = ACTING_TENANT.set(tenant)
            try:
                assert [r["id"] for r in await pool.fetch(query, both)] == [ledger]
            finally:
                ACTING_TENANT.reset(token)
        assert await pool.fetch(query, both) == []  # acting for no tenant
    finally:
        await pool.close()
