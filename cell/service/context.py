"""What every use case needs: the pool, the settings, the account-facts cache, the key cache, the nudger."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

import asyncpg

from cell.ledger.errors import RetryableConflict
from cell.ledger.models import Account
from cell.service.nudge import Nudger, NullNudger
from cell.settings import CellSettings
from cell.store import accounts as store_accounts
from cell.store import ledgers as store_ledgers
from cell.store.errors import translate

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

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run one use case on a pooled connection; driver errors become domain errors. A retryable conflict
        (serialization failure, deadlock, a version changed under us) runs `fn` again from the start, so it
        re-reads what it depends on: the one place the cell retries."""
        for attempt in range(RETRIES_MAX):
            try:
                async with self.pool.acquire() as conn:
                    return await fn(conn)
            except asyncpg.PostgresError as exc:
                error = translate(exc)
                if error is None:
                    raise
                if isinstance(error, RetryableConflict) and attempt + 1 < RETRIES_MAX:
                    await asyncio.sleep(0.002 * (attempt + 1))
                    continue
                raise error from exc
        raise AssertionError("unreachable")
