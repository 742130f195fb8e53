"""Group commit of async postings: a posting is never split across transactions; concurrent async postings of a
tenant may share one commit (group commit); a group that fails is re-run one posting per transaction.

Which postings: those that apply no account now (hybrid mode, no balance lock, no lock_version, no resulting
balances asked for; `ledger_post`'s apply list empty), neither a reversal nor a partial post. The async postings of
one tenant ready to run in the same turn of the event loop, and those that arrive while STATEMENTS_IN_FLIGHT_MAX of
the tenant's groups are in flight, go to PostgreSQL as one round trip in one transaction (store.post_group: one
`ledger_post` call per posting, in order, one commit for all; gather.Gatherer forms the groups, at most
CellSettings.posting_group_max postings each, 1: off). A posting alone goes as before (store.post), one extra pass of
the event loop later. Each posting gets its own `ledger_post` answer, as alone: its Idempotency-Key is held and
probed in its own call (two postings of a group with one key: the second is the first's replay, as one after the
other), its answer kept with its key.

When the group's statement fails with the database's or the domain's error (a key in flight elsewhere, a frozen
tenant, a check of `ledger_post`, a conflict still there after CellContext.run's retries), nothing of the group was
committed: each posting is then run on its own, one per transaction, and gets exactly the answer or error it gets
alone. When the outcome is unknown (OutcomeUnknown: the connection was lost while the statement ran, its commit
may have landed), every posting of the group gets OutcomeUnknown, never a second run; DatabaseUnavailable (no
connection, nothing sent) and any other error (the driver's own) go to every posting too, never a second run.
Once formed, a group's statement runs to its end whatever happens to the requests in it (a cancelled request's
posting is written, as a posting alone whose statement reached the database before its request ended: a client
that got no answer retries with its Idempotency-Key); a request cancelled while its group forms is left out of it.
Sync-only accounts (a mutable flag `ledger_post` reads) are applied in the group's transaction as alone: a
deadlock of two groups is a retryable conflict, then one posting per transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from cell.ledger.errors import DatabaseUnavailable, LedgerError, OutcomeUnknown
from cell.ledger.models import Posting
from cell.service.gather import ALONE, Gatherer
from cell.service.metrics import POSTING_GROUP_SIZE, POSTING_GROUPS_SPLIT
from cell.store import transactions as store
from cell.store.transactions import PostResult

T = TypeVar("T")
STATEMENTS_IN_FLIGHT_MAX = 2  # per tenant: the postings that arrive meanwhile gather for the next group
Item = tuple[Posting, list | None, bytes | None]  # a posting, its events, the answer its key keeps


def groupable(posting: Posting) -> bool:
    """A posting that applies no account now (its answer needs nothing but its own `ledger_post` call), neither a
    reversal nor a partial post (which lock another transaction's row)."""
    return (not posting.apply_accounts and posting.partially_posts is None
            and posting.state.reverses_ledger_transaction_id is None)


class PostingGroups(Gatherer):
    """The cell's posting groups (one per CellContext)."""

    def __init__(self, run: Callable[[Callable[[asyncpg.Connection], Awaitable[T]]], Awaitable[T]],
                 size_max: int) -> None:
        """`run(fn)`: fn on a connection acting for the caller's tenant (CellContext.run: retries, errors)."""
        super().__init__(self._together, self._alone, size_max=size_max, in_flight_max=STATEMENTS_IN_FLIGHT_MAX,
                         keep_sent=True)
        self._run = run

    async def post(self, posting: Posting, events: list | None, answer: bytes | None) -> PostResult:
        """store.post's answer for the posting: written in a group of the tenant's async postings if `groupable`,
        else alone at once."""
        if not groupable(posting):
            return await self._alone(posting.tenant_id, (posting, events, answer))
        return await self.submit(posting.tenant_id, (posting, events, answer))

    async def _together(self, tenant_id: str, items: list[Item]) -> list:
        POSTING_GROUP_SIZE.observe(len(items))
        try:
            return await self._run(lambda conn: store.post_group(conn, items))
        except (OutcomeUnknown, DatabaseUnavailable):
            raise  # to every posting of the group: it may have committed, or nothing was sent
        except (LedgerError, asyncpg.PostgresError):
            POSTING_GROUPS_SPLIT.inc()
            return [ALONE] * len(items)  # the group's transaction failed, nothing committed: one by one

    async def _alone(self, tenant_id: str, item: Item) -> PostResult:
        posting, events, answer = item
        return await self._run(lambda conn: store.post(conn, posting, events, answer))
