"""A connection whose driver state broke under a crashing PostgreSQL (asyncpg's InternalClientError) is answered
as outcome_unknown (503 with Retry-After through the API), and the connection is dropped, never reused."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import asyncpg
import pytest

from cell.ledger.errors import OutcomeUnknown
from cell.service.context import AccountCache, CellContext


class FakeConn:
    terminated = False

    def terminate(self) -> None:
        self.terminated = True

    def is_closed(self) -> bool:
        return self.terminated


class FakePool:
    def __init__(self, conn: FakeConn) -> None:
        self.conn, self.released = conn, []

    async def acquire(self, timeout: float):
        return self.conn

    async def release(self, conn) -> None:
        self.released.append(conn)


def test_a_broken_driver_state_is_outcome_unknown_and_the_connection_is_dropped():
    conn = FakeConn()
    pool = FakePool(conn)
    ctx = CellContext(settings=SimpleNamespace(db_acquire_s_max=1.0, posting_group_max=1), pool=pool,
                      cache=AccountCache(10))

    async def fn(_conn):
        raise asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")

    with pytest.raises(OutcomeUnknown):
        asyncio.run(ctx.run(fn))
    assert conn.terminated and pool.released == [conn]


def test_a_broken_driver_state_outside_the_context_is_session_lost():
    """The same error from a pool call after the posting committed (storing the idempotent answer) is handled by
    the API's database_error_handler: session_lost, so outcome_unknown for a write (a 503, not a 500 that claims
    nothing was half-applied)."""
    from cell.store.errors import session_lost

    assert session_lost(asyncpg.InternalClientError("cannot switch to state 12; another operation is in progress"))


def test_a_broken_driver_state_on_a_connection_already_gone_is_still_outcome_unknown():
    """The connection closed as the error came (its pool took it back, asyncpg's proxy detached): nothing to drop,
    and the answer is still outcome_unknown, not the proxy's InterfaceError."""

    class Released(FakeConn):
        def terminate(self) -> None:
            raise asyncpg.InterfaceError("cannot call Connection.terminate(): connection has been released back to "
                                         "the pool")

    conn = Released()
    ctx = CellContext(settings=SimpleNamespace(db_acquire_s_max=1.0, posting_group_max=1), pool=FakePool(conn),
                      cache=AccountCache(10))

    async def fn(_conn):
        raise asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")

    with pytest.raises(OutcomeUnknown):
        asyncio.run(ctx.run(fn))
