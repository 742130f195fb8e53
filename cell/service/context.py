"""What every use case needs: the pool, the settings, the account-facts cache, the key cache, the nudger."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

import asyncpg

from cell.ledger.errors import DatabaseUnavailable, OutcomeUnknown, RetryableConflict
from cell.ledger.models import Account
from cell.service.idempotency import ResponseStore
from cell.service.nudge import Nudger, NullNudger
from cell.settings import CellSettings
from cell.store import accounts as store_accounts
from cell.store import ledgers as store_ledgers
from cell.store.errors import session_lost, translate

T = TypeVar("T")
RETRIES_MAX = 5


class AccountCache:
    """Accounts' ledger, currency, exponent and normal balance never change: cache them per tenant."""

    def __init__(self, size_max: int) -> None:
        self.size_max = size_max
        self._items: OrderedDict[tuple[str, str], Account] = OrderedDict()
        self._ledgers: OrderedDict[tuple[str, str], bool] = OrderedDict()

    async def accounts(self, conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str,
                       ids: list[str]) -> dict[str, Account]:
        found: dict[str, Account] = {}
        missing: list[str] = []
        for account_id in ids:
            hit = self._items.get((tenant_id, account_id))
            if hit is None:
                missing.append(account_id)
            else:
                found[account_id] = hit
        if missing:
            for acc in await store_accounts.facts(conn, tenant_id, missing):
                self.remember(tenant_id, acc)
                found[acc.id] = acc
        return found

    def remember(self, tenant_id: str, acc: Account) -> None:
        self._items[(tenant_id, acc.id)] = acc
        if len(self._items) > self.size_max:
            self._items.popitem(last=False)

    async def ledger_exists(self, conn, tenant_id: str, ledger_id: str) -> bool:
        if (tenant_id, ledger_id) in self._ledgers:
            return True
        if not await store_ledgers.exists(conn, tenant_id, ledger_id):
            return False
        self._ledgers[(tenant_id, ledger_id)] = True
        if len(self._ledgers) > self.size_max:
            self._ledgers.popitem(last=False)
        return True


@dataclass
class CellContext:
    settings: CellSettings
    pool: asyncpg.Pool
    cache: AccountCache
    keys: Any = None
    nudger: Nudger = field(default_factory=NullNudger)
    responses: ResponseStore | None = None  # the first answers of Idempotency-Keys (one per pool by default)

    def __post_init__(self) -> None:
        if self.responses is None:
            self.responses = ResponseStore(self.pool)

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run one use case on a pooled connection; driver errors become domain errors. A retryable conflict
        (serialization failure, deadlock, a version changed under us) runs `fn` again from the start, so it
        re-reads what it depends on: the one place the cell retries.
        No connection within db_acquire_s_max is DatabaseUnavailable (nothing was sent); a connection lost while
        `fn` ran is OutcomeUnknown (its COMMIT may have landed: the client retries with its Idempotency-Key)."""
        for attempt in range(RETRIES_MAX):
            conn = await self._acquire()
            try:
                return await fn(conn)
            except asyncpg.PostgresError as exc:
                if session_lost(exc):
                    raise outcome_unknown(exc) from exc
                error = translate(exc)
                if error is None:
                    raise
                if isinstance(error, RetryableConflict) and attempt + 1 < RETRIES_MAX:
                    await asyncio.sleep(0.002 * (attempt + 1))
                    continue
                raise error from exc
            except (OSError, asyncpg.InterfaceError) as exc:
                if session_lost(exc) or conn.is_closed():
                    raise outcome_unknown(exc) from exc
                raise
            except asyncpg.InternalClientError as exc:
                # The driver's protocol state is broken (seen when PostgreSQL crashes under load: "cannot switch
                # to state 12; another operation is in progress"): the connection is unusable and what was in
                # flight on it unknown. Drop it (never back into the pool) and answer 503, not a 500.
                conn.terminate()
                raise outcome_unknown(exc) from exc
            finally:
                await self._release(conn)
        raise AssertionError("unreachable")

    async def _acquire(self) -> asyncpg.Connection:
        """A pooled connection, or DatabaseUnavailable when none comes within db_acquire_s_max. When a connected
        connection is free (the one asyncpg's LIFO queue of free holders hands out next) it is taken without arming
        a loop timer, which costs more than the rest of the acquire: it is handed over at once (the acting tenant's
        set_config, when it changes, is a statement like fn's, under the server's statement_timeout). Anything else
        (a full pool, a holder still to connect and initialise) waits under the bound."""
        try:
            free = getattr(self.pool, "_queue", None)  # asyncpg 0.32's (requirements.lock)
            if free is not None and free.qsize() and free._queue[-1].is_connected():
                return await self.pool.acquire()
            return await self.pool.acquire(timeout=self.settings.db_acquire_s_max)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise database_unavailable(exc) from exc

    async def _release(self, conn) -> None:
        """Pool.release, without the task it starts for every release (asyncio.shield, so that a cancellation cannot
        stop a reset midway) when there is nothing to reset or wait for: then the holder's release never suspends,
        and the connection is back in the pool at once (an acquire and release: ~16 us instead of 40-80 us, and no
        extra turn of the event loop per request). Anything else (a transaction left open, a cancellation in
        progress, an expired or used-up connection, a closing pool) takes asyncpg's own path. asyncpg 0.32's
        internals (requirements.lock)."""
        try:
            holder, con, pool = conn._holder, conn._con, self.pool
            idle = not (con is None or con.is_closed() or con.is_in_transaction() or con._top_xact is not None
                        or con._protocol._is_cancelling() or con._protocol.queries_count >= holder._max_queries
                        or holder._generation != pool._generation or pool._closing or pool._closed)
        except AttributeError:  # not an asyncpg pool's connection
            idle = False
        if not idle:
            await self.pool.release(conn)
            return
        con._on_release()
        await holder.release(None)


def database_unavailable(exc: BaseException) -> DatabaseUnavailable:
    # No claim that nothing was written: an earlier step of the same request may have committed.
    return DatabaseUnavailable(f"the database is unreachable ({type(exc).__name__}); retry shortly, with the same "
                               "Idempotency-Key")


def outcome_unknown(exc: BaseException) -> OutcomeUnknown:
    return OutcomeUnknown(f"the database connection was lost while the request was in flight ({type(exc).__name__}): "
                          "it may or may not have taken effect; retry with the same Idempotency-Key")
