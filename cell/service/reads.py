"""Current balance reads that arrive together, read together: the reads of one tenant's accounts ready to run in the
same turn of the event loop go to the database as one statement (one round trip, one connection, one snapshot), and
while STATEMENTS_IN_FLIGHT_MAX of the tenant's statements are in flight, the reads that arrive gather for the next."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, TypeVar

import asyncpg

from cell.store import accounts as store

T = TypeVar("T")
READS_PER_STATEMENT_MAX = 500  # a burst beyond it goes in further statements
STATEMENTS_IN_FLIGHT_MAX = 2  # per tenant: the reads that arrive meanwhile gather for the next statement
_ALONE = object()  # a joined read's answer when the statement it joined was not sent: it reads on its own


class BalanceReads:
    """The first read of a tenant in a turn of the event loop lets the others ready to run join it (one
    asyncio.sleep(0)), then reads all their accounts in one statement and hands each its row. Each read still comes
    after its request arrived (the statement is sent after every read in it began), sees the acting tenant's rows
    only (one batch per tenant), and gets the error of the statement it was in. A read alone costs one extra pass of
    the event loop; under load, one round trip serves many. A batch formed while the tenant has
    STATEMENTS_IN_FLIGHT_MAX statements in flight stays open until one of them is answered: under load a statement
    serves the reads of a whole round trip (in PostgreSQL, a statement costs more than the rows it reads), at the
    price of a read waiting at most that long for its turn."""

    def __init__(self, run: Callable[[Callable[[asyncpg.Connection], Awaitable[T]]], Awaitable[T]]) -> None:
        """`run(fn)`: fn on a connection acting for the caller's tenant (CellContext.run: retries, errors)."""
        self._run = run
        self._forming: dict[str, list[tuple[object, asyncio.Future]]] = {}
        self._in_flight: dict[str, int] = {}  # tenant -> its statements sent and not yet answered
        self._landing: dict[str, list[asyncio.Future]] = {}  # tenant -> batches waiting for one to be answered

    async def read(self, tenant_id: str, account_id) -> asyncpg.Record | None:
        """The row store.accounts.fetch reads (current balances) of the tenant's account, or None."""
        forming = self._forming.get(tenant_id)
        if forming is not None and len(forming) < READS_PER_STATEMENT_MAX - 1:  # with its first read
            joined = asyncio.get_running_loop().create_future()
            forming.append((account_id, joined))
            row = await joined
            return row if row is not _ALONE else await self._alone(tenant_id, account_id)
        joined_reads = self._forming[tenant_id] = []
        try:
            await asyncio.sleep(0)  # every read ready to run now joins
            while self._in_flight.get(tenant_id, 0) >= STATEMENTS_IN_FLIGHT_MAX:
                await self._landed(tenant_id)  # and every read that arrives until one is answered
        except BaseException:  # cancelled: the reads that joined read on their own
            for _, joined in joined_reads:
                if not joined.done():
                    joined.set_result(_ALONE)
            raise
        finally:
            if self._forming.get(tenant_id) is joined_reads:  # not yet a further batch's, full as it was
                del self._forming[tenant_id]
        self._in_flight[tenant_id] = self._in_flight.get(tenant_id, 0) + 1
        try:
            if not joined_reads:
                return await self._run(lambda conn: store.fetch(conn, tenant_id, account_id))
            ids = list(dict.fromkeys([account_id, *(a for a, _ in joined_reads)]))
            rows = await self._run(lambda conn: store.fetch_current(conn, tenant_id, ids))
        except BaseException as exc:
            for _, joined in joined_reads:
                if not joined.done():
                    if isinstance(exc, Exception):
                        joined.set_exception(exc)
                    else:  # this read was cancelled: the others were not, they read on their own
                        joined.set_result(_ALONE)
            raise
        finally:
            self._land(tenant_id)
        by_id = {row["id"]: row for row in rows}
        for joined_id, joined in joined_reads:
            if not joined.done():  # a cancelled read's future is done
                joined.set_result(by_id.get(joined_id))
        return by_id.get(account_id)

    def _landed(self, tenant_id: str) -> asyncio.Future:
        """Done when one of the tenant's statements in flight is answered (or failed)."""
        landed = asyncio.get_running_loop().create_future()
        self._landing.setdefault(tenant_id, []).append(landed)
        return landed

    def _land(self, tenant_id: str) -> None:
        """A statement of the tenant answered: every batch waiting looks again (one of them goes)."""
        left = self._in_flight[tenant_id] - 1
        if left:
            self._in_flight[tenant_id] = left
        else:
            del self._in_flight[tenant_id]
        for landed in self._landing.pop(tenant_id, ()):
            if not landed.done():
                landed.set_result(None)

    async def _alone(self, tenant_id: str, account_id) -> asyncpg.Record | None:
        return await self._run(lambda conn: store.fetch(conn, tenant_id, account_id))
