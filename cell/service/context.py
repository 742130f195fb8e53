"""What every use case needs: the pool, the settings, the account-facts cache, the key cache, the nudger, the
batched balance reads, the posting groups."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from cell.ledger.errors import DatabaseUnavailable, OutcomeUnknown, RetryableConflict
from cell.ledger.models import Account
from cell.service.nudge import Nudger, NullNudger
from cell.service.posting_groups import PostingGroups
from cell.service.reads import BalanceReads
from cell.settings import CellSettings
from cell.store import accounts as store_accounts
from cell.store.db import ACTING_TENANT, act_for_task_tenant, no_reset
from cell.store import ledgers as store_ledgers
from cell.store.errors import session_lost, translate

T = TypeVar("T")
RETRIES_MAX = 5


class AccountCache:
    """Accounts' ledger, currency, exponent and normal balance never change: cache them per tenant. An account
    deleted (discarded, 0204) may still be remembered by another process: what writes money checks it again in the
    database (ledger_post), and what attaches an account to something reads it `fresh`."""

    def __init__(self, size_max: int) -> None:
        self.size_max = size_max
        self._items: OrderedDict[tuple[str, str], Account] = OrderedDict()
        self._ledgers: OrderedDict[tuple[str, str], bool] = OrderedDict()

    async def accounts(self, conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str,
                       ids: list[str], fresh: bool = False) -> dict[str, Account]:
        found: dict[str, Account] = {}
        missing: list[str] = []
        for account_id in ids:
            hit = None if fresh else self._items.get((tenant_id, account_id))
            if hit is None:
                missing.append(account_id)
            else:
                found[account_id] = hit
        if missing:
            for acc in await store_accounts.facts(conn, tenant_id, missing):
                self.remember(tenant_id, acc)
                found[acc.id] = acc
            for account_id in missing:
                if account_id not in found:
                    self.forget(tenant_id, account_id)
        return found

    def forget(self, tenant_id: str, account_id: str) -> None:
        self._items.pop((tenant_id, account_id), None)

    def forget_ledger(self, tenant_id: str, ledger_id: str) -> None:
        self._ledgers.pop((tenant_id, ledger_id), None)

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
    balance_reads: BalanceReads | None = None  # current balances read together (one per context by default)
    posting_groups: PostingGroups | None = None  # async postings committed together (one per context by default)
    # Called after each use case that completed: what it wrote may be events, which this process's events
    # sequencer then positions at its fast interval (ledger_common/pacing.py) instead of its idle one.
    after_run: Callable[[], None] | None = None
    # The requests waiting for a connection of a full pool (_wait_free): (deadline, getter), oldest first, and the one
    # timer that ends the waits past their deadline.
    _waiting: deque = field(default_factory=deque, init=False, repr=False)
    _expiry: asyncio.TimerHandle | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.balance_reads is None:
            self.balance_reads = BalanceReads(self.run)
        if self.posting_groups is None:
            self.posting_groups = PostingGroups(self.run, self.settings.posting_group_max)

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run one use case on a pooled connection; driver errors become domain errors. A retryable conflict
        (serialization failure, deadlock, a version changed under us) runs `fn` again from the start, so it
        re-reads what it depends on: the one place the cell retries.
        No connection within db_acquire_s_max is DatabaseUnavailable (nothing was sent); a connection lost while
        `fn` ran is OutcomeUnknown (its COMMIT may have landed: the client retries with its Idempotency-Key)."""
        for attempt in range(RETRIES_MAX):
            conn = await self._acquire()
            try:
                result = await fn(conn)
                if self.after_run is not None:
                    self.after_run()
                return result
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
                if session_lost(exc) or _closed(conn):
                    raise outcome_unknown(exc) from exc
                raise
            except asyncpg.InternalClientError as exc:
                # The driver's protocol state is broken (seen when PostgreSQL crashes under load: "cannot switch
                # to state 12; another operation is in progress"): the connection is unusable and what was in
                # flight on it unknown. Drop it (never back into the pool) and answer 503, not a 500.
                _drop(conn)
                raise outcome_unknown(exc) from exc
            finally:
                if not self._put_back(conn):
                    await self.pool.release(conn)
        raise AssertionError("unreachable")

    async def using(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`fn` on a pooled connection taken and given back as `run` does, without its retries or error translation:
        for a statement whose caller handles the driver's errors as from the pool (no connection within
        db_acquire_s_max is DatabaseUnavailable)."""
        conn = await self._acquire()
        try:
            return await fn(conn)
        except asyncpg.InternalClientError:
            _drop(conn)  # the driver's protocol state is broken: never back into the pool (as in run)
            raise
        finally:
            if not self._put_back(conn):
                await self.pool.release(conn)

    async def _acquire(self) -> asyncpg.Connection:
        """A pooled connection acting for the task's tenant, or DatabaseUnavailable when none comes within
        db_acquire_s_max. A free connected connection (the one asyncpg's LIFO queue hands out next) is checked out
        at once, without the loop timer of a bounded wait or the pool's setup coroutine, which cost more than the
        rest of the acquire; its acting tenant is set here when it differs (the setup hook's rule, db.TenantConnection),
        a statement like fn's, under the server's statement_timeout. When every connection is in use, the request
        waits in the pool's queue (_wait_free) and takes the connection it is woken for the same way. Anything else
        (a holder still to connect and initialise, a closing pool) goes through Pool.acquire under what is left of
        the bound."""
        try:
            conn = self._take_free()
            if conn is None:
                deadline = None
                try:
                    waited = await self._wait_free()
                except _GoSlow as slow:
                    waited, deadline = None, slow.deadline
                if waited is None:
                    bound = self.settings.db_acquire_s_max
                    if deadline is not None:
                        bound = max(0.0, deadline - self.pool._loop.time())
                    return await self.pool.acquire(timeout=bound)
                conn = waited
            if not conn._con.acts_for_task_tenant():
                try:
                    await conn._con.act_for(ACTING_TENANT.get())
                except BaseException:
                    # As asyncpg does when setup fails: the session's tenant is unknown now, so it is never reused.
                    _drop(conn)
                    raise
            return conn
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise database_unavailable(exc) from exc

    async def _wait_free(self):
        """A connection of a full pool, taken as _take_free takes one once a holder is back in the pool's queue: the
        request waits as asyncio.Queue.get does (a future among the queue's getters, woken in arrival order by the
        queue's put, asyncpg's own waiters among them; a wake-up it does not use passes to the next getter, so a
        cancelled request never keeps a connection from the others). Its bound is the context's one timer for all
        waits (_expire), not a timer and a wait_for task per request. None when the pool is not full or not an
        asyncpg pool (the caller goes to Pool.acquire); _GoSlow with the deadline when a holder came back that only
        asyncpg's acquire can hand out (to connect, or the pool closing); TimeoutError past db_acquire_s_max.
        asyncio's Queue and asyncpg 0.32's internals (requirements.lock)."""
        pool = self.pool
        try:
            free, loop, getters = pool._queue, pool._loop, pool._queue._getters
            if (free.qsize() and not getters) or pool._closing or not pool._initialized or (
                    pool._setup is not act_for_task_tenant):
                return None
        except AttributeError:  # not an asyncpg pool
            return None
        deadline = loop.time() + self.settings.db_acquire_s_max
        waiting = self._waiting
        waited = False
        while True:
            getter = loop.create_future()
            if waited:
                getters.appendleft(getter)  # first in line again: it was, and a new request took its connection
            else:
                getters.append(getter)
            waited = True
            waiting.append((deadline, getter))
            expiry = self._expiry
            if expiry is None or expiry.when() > deadline:  # none yet, or set for later ones (this one waits again)
                if expiry is not None:
                    expiry.cancel()
                self._expiry = loop.call_at(deadline, self._expire)
            try:
                await getter
            except BaseException:
                # asyncio.Queue.get's rule: this getter is out; a holder it was woken for wakes the next one.
                getter.cancel()
                try:
                    getters.remove(getter)
                except ValueError:
                    pass
                if not getter.cancelled():
                    getter.exception()  # retrieved (a timeout that lost to a cancellation): nothing to log
                    if free.qsize():
                        free._wakeup_next(getters)
                raise
            finally:
                while waiting and waiting[0][1].done():
                    waiting.popleft()
            conn = self._take_free(woken=True)
            if conn is not None:
                return conn
            if free.qsize() or pool._closing:
                raise _GoSlow(deadline)
            # Another request took the holder between its return and this wake-up: wait again, as Queue.get does.

    def _expire(self) -> None:
        """The waits past their deadline end with TimeoutError; the timer is set again for the earliest left."""
        self._expiry = None
        now = self.pool._loop.time()
        left = []
        for deadline, getter in self._waiting:
            if getter.done():
                continue
            if deadline <= now:
                getter.set_exception(TimeoutError())
            else:
                left.append((deadline, getter))
        self._waiting.clear()
        self._waiting.extend(left)
        if left:
            self._expiry = self.pool._loop.call_at(min(deadline for deadline, _ in left), self._expire)

    def _take_free(self, woken: bool = False):
        """The free connection asyncpg's queue hands out next, checked out as its holder's acquire does (but for the
        setup coroutine, whose rule _acquire applies), when it is connected and current and the pool open and one of
        db.create_pool's; None otherwise, and None while others wait in line for one (unless `woken`: this request
        is the one a connection's return woke), so that a new request never takes a waiter's connection.
        asyncpg 0.32's internals (requirements.lock)."""
        pool = self.pool
        try:
            free = pool._queue
            if (not free.qsize() or (free._getters and not woken) or pool._closing or not pool._initialized
                    or pool._setup is not act_for_task_tenant):
                return None
            holder = free._queue[-1]
            con = holder._con
            if con is None or con.is_closed() or holder._generation != pool._generation:
                return None
            in_use = pool._loop.create_future()
        except AttributeError:  # not an asyncpg pool
            return None
        free.get_nowait()
        holder._maybe_cancel_inactive_callback()
        holder._proxy = proxy = PoolConnectionProxy(holder, con)
        holder._in_use, holder._timeout = in_use, None
        return proxy

    def _put_back(self, conn) -> bool:
        """Pool.release, done here when there is nothing to reset or wait for: no task (Pool.release starts one for
        every release, asyncio.shield, so that a cancellation cannot stop a reset midway), no coroutine, no suspension;
        the connection is back in the pool at once. False (nothing done) for anything else: a transaction left open, a
        cancellation in progress, an expired or used-up connection, a closing pool, a reset to run; asyncpg's own path
        takes those. asyncpg 0.32's internals (requirements.lock)."""
        try:
            holder, con, pool = conn._holder, conn._con, self.pool
            if (con is None or con.is_closed() or con.is_in_transaction() or con._top_xact is not None
                    or con._protocol._is_cancelling() or con._protocol.queries_count >= holder._max_queries
                    or holder._generation != pool._generation or pool._closing or pool._closed
                    or pool._reset is not no_reset or holder._in_use is None):
                return False
        except AttributeError:  # not an asyncpg pool's connection
            return False
        if con._listeners or con._log_listeners:
            con._on_release()  # its warning for a listener left behind
            con._listeners.clear()  # what Connection._reset does before it would roll back
            con._log_listeners.clear()
        else:  # _on_release without a listener to warn about: the count that invalidates earlier references
            con._pool_release_ctr += 1
        holder._timeout = None
        holder._release()
        holder._setup_inactive_callback()
        return True


def _drop(conn) -> None:
    """End a pooled connection's session so that it is never used again. A session PostgreSQL ended already (a
    restart, a terminated backend) needs nothing: as it closed, asyncpg gave its holder back to the pool and detached
    the proxy, whose methods then raise InterfaceError."""
    try:
        conn.terminate()
    except asyncpg.InterfaceError:
        pass


def _closed(conn) -> bool:
    """The connection is closed, or its pool already took it back because it closed (the proxy detached: a lost
    connection's close releases it, asyncpg's _release_on_close)."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True


class _GoSlow(Exception):
    """A wait for a full pool's connection ended with a holder only Pool.acquire can hand out, by `deadline`."""

    def __init__(self, deadline: float) -> None:
        super().__init__(deadline)
        self.deadline = deadline


def database_unavailable(exc: BaseException) -> DatabaseUnavailable:
    # No claim that nothing was written: an earlier step of the same request may have committed.
    return DatabaseUnavailable(f"the database is unreachable ({type(exc).__name__}); retry shortly, with the same "
                               "Idempotency-Key")


def outcome_unknown(exc: BaseException) -> OutcomeUnknown:
    return OutcomeUnknown(f"the database connection was lost while the request was in flight ({type(exc).__name__}): "
                          "it may or may not have taken effect; retry with the same Idempotency-Key")
