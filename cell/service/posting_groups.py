"""Group commit of postings: a posting is never split across transactions; concurrent postings of a tenant may
share one commit (group commit); a group that fails is re-run one posting per transaction.

Which postings: every posting but a reversal or a partial post (which lock another transaction's row). Two kinds of
groups, never mixed: async postings (hybrid mode, no balance lock, no lock_version, no resulting balances asked
for; `ledger_post`'s apply list empty), and postings that apply accounts now (sync mode, or a balance lock, a
lock_version, resulting balances: their answer is still their own `ledger_post` call's), kept apart so that the
cost of those locks and checks stays with them. A posting refused by its balance lock or lock_version (a normal
answer, a card declined) fails its group's statement; the group is then sent again at once with each posting in a
subtransaction (store.post_group's `isolated`: ledger_post_in_group), where the refused one is undone alone and gets
the error it gets alone, and the others are written; the tenant's groups with such checks go so for ISOLATED_S
after (a subtransaction per posting costs the database, and the worker reading what they wrote, about a sixth more
CPU: paid only by a tenant whose postings are being refused). Postings of one tenant and kind ready
to run in the same turn of the event loop, and those that arrive while STATEMENTS_IN_FLIGHT_MAX of its groups are in
flight, go to PostgreSQL as one round trip in one transaction (store.post_group: one commit for all; an async group
set-wise, one insert per table, the rows one `ledger_post` call per posting writes, else one call per posting;
gather.Gatherer forms the groups, at most CellSettings.posting_group_max postings each, 1:
off). A posting alone goes as before (store.post), one extra pass of the event loop later. Each posting gets its
own `ledger_post` answer, as alone: its Idempotency-Key is held and probed in its own call (two postings of a group
with one key: the second is the first's replay, as one after the other), its answer kept with its key.

Lock order (no deadlock added): a posting alone locks its accounts' balance rows in one statement, in account order
(ledger_lock). A group that applies accounts is sent in account order (`lock_order`: postings sorted by their
accounts, each locking only rows after every row the group holds already), so that the group as a whole takes its
locks in that one order too, in one round trip. When some do not fit that order (postings through a hot account whose
other account sorts below it), the group first takes the tenant's fence and every row of its postings in one
statement, in account order, then runs them: an explicit transaction, four round trips. Concurrent postings have no
order of their own to keep: one sent later in a group is as one that arrived later. (A hot account locked by the
first of a group is then held by the group until its commit: the others of the group apply it without waiting, and
the group shares one commit, one WAL flush.)

When the group's statement fails with the database's or the domain's error (a key in flight elsewhere, a frozen
tenant, another check of `ledger_post`, a conflict still there after CellContext.run's
retries), nothing of the group was committed: each posting is then run on its own, one per transaction, and gets
exactly the answer or error it gets alone. When the outcome is unknown (OutcomeUnknown: the connection was lost while
the statement ran, its commit may have landed), every posting of the group gets OutcomeUnknown, never a second run;
DatabaseUnavailable (no connection, nothing sent) and any other error (the driver's own) go to every posting too,
never a second run. Once formed, a group's statement runs to its end whatever happens to the requests in it (a
cancelled request's posting is written, as a posting alone whose statement reached the database before its request
ended: a client that got no answer retries with its Idempotency-Key); a request cancelled while its group forms is
left out of it. Sync-only accounts (a mutable flag `ledger_post` reads, unknown here) are applied in the group's
transaction as alone, outside the lock order: a deadlock of two groups is a retryable conflict, then one posting per
transaction."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from cell.ledger.errors import (
    DatabaseUnavailable,
    LedgerError,
    OutcomeUnknown,
    PostingRejected,
)
from cell.ledger.models import Posting
from cell.service.gather import ALONE, Gatherer
from cell.service.metrics import POSTING_GROUP_SIZE, POSTING_GROUPS_SPLIT
from cell.store import transactions as store
from cell.store.transactions import PostResult

T = TypeVar("T")
STATEMENTS_IN_FLIGHT_MAX = 2  # per tenant and kind: the postings that arrive meanwhile gather for the next group
Item = tuple[Posting, list | None, bytes | None]  # a posting, its events, the answer its key keeps
_APPLYING = "\x00applying"  # a tenant's key suffix for its groups of postings that apply accounts now
# Postings a group that applies accounts sends at most (the others are served alone), whatever posting_group_max
# says: with balance locks each is a subtransaction (ledger_post_in_group), two with archive_on_balance_lock_failure,
# and past 64 a backend's subtransactions overflow its cache in shared memory (PGPROC_MAX_CACHED_SUBXIDS), which slows
# every other backend's snapshots.
APPLYING_GROUP_MAX = 32
ISOLATED_S = 10.0  # after a refusal fails a group, how long the key's groups with checks go isolated
_REFUSALS = frozenset({"balance_lock_failed", "lock_version_mismatch"})  # LG001, LG002


def groupable(posting: Posting) -> bool:
    """Neither a reversal nor a partial post (which lock another transaction's row)."""
    return not store.locks_another(posting)


def lock_order(accounts: list[list[str]]) -> tuple[list[int], list[int]]:
    """Of postings that apply `accounts` now (each list sorted: a posting's lock order), those that take their locks
    in account order when sent in this order, and those that do not fit it (indexes into `accounts`): sorted by their
    accounts (ties in arrival order), a posting fits when every account it locks that the ones before it do not hold
    yet comes after every account they hold, as a posting alone locks. (Postings that share one account and lock one
    more each, a hot account's, all fit when the shared one sorts first: sorted by the other.)"""
    held: set[str] = set()
    last = ""
    sent: list[int] = []
    alone: list[int] = []
    for i in sorted(range(len(accounts)), key=lambda i: accounts[i]):
        new = [a for a in accounts[i] if a not in held]
        if new and new[0] <= last:
            alone.append(i)
            continue
        sent.append(i)
        held.update(new)
        last = max(last, accounts[i][-1])
    return sent, alone


class PostingGroups(Gatherer):
    """The cell's posting groups (one per CellContext)."""

    def __init__(self, run: Callable[[Callable[[asyncpg.Connection], Awaitable[T]]], Awaitable[T]],
                 size_max: int) -> None:
        """`run(fn)`: fn on a connection acting for the caller's tenant (CellContext.run: retries, errors)."""
        super().__init__(self._together, self._alone, size_max=size_max, in_flight_max=STATEMENTS_IN_FLIGHT_MAX,
                         keep_sent=True)
        self._run = run
        self._isolated_until: dict[str, float] = {}  # key -> monotonic time its checked groups go isolated until

    async def post(self, posting: Posting, events: list | None, answer: bytes | None) -> PostResult:
        """store.post's answer for the posting: written in a group of the tenant's postings of its kind if
        `groupable`, else alone at once."""
        if not groupable(posting):
            return await self._alone(posting.tenant_id, (posting, events, answer))
        key = posting.tenant_id + _APPLYING if posting.apply_accounts else posting.tenant_id
        result = await self.submit(key, (posting, events, answer))
        if isinstance(result, PostingRejected):  # its balance lock or lock_version, in a group that went on
            raise result
        return result

    async def _together(self, key: str, items: list[Item]) -> list:
        answers: list = [ALONE] * len(items)
        lock_first = None
        if key.endswith(_APPLYING):
            sent, alone = lock_order([posting.apply_accounts for posting, _, _ in items])
            sent = (sent + alone)[:APPLYING_GROUP_MAX]
            if len(sent) < 2:
                return answers
            if alone:  # one would lock a row below one the group holds: the group locks all its rows first
                lock_first = sorted({account for i in sent for account in items[i][0].apply_accounts})
        else:
            sent = list(range(len(items)))
        POSTING_GROUP_SIZE.observe(len(sent))
        group = [items[i] for i in sent]
        checked = any(not e.condition.is_empty() for posting, _, _ in group for e in posting.entries)
        isolated = checked and self._isolated_until.get(key, 0.0) > time.monotonic()
        while True:
            try:
                results = await self._run(
                    lambda conn, isolated=isolated: store.post_group(conn, group, lock_first, isolated))
                break
            except (OutcomeUnknown, DatabaseUnavailable):
                raise  # to every posting of the group: it may have committed, or nothing was sent
            except PostingRejected as exc:
                if checked and not isolated and exc.code in _REFUSALS:  # nothing committed: again, isolated
                    isolated = True
                    self._isolated_until[key] = time.monotonic() + ISOLATED_S
                    continue
                POSTING_GROUPS_SPLIT.inc()
                return answers
            except (LedgerError, asyncpg.PostgresError):
                POSTING_GROUPS_SPLIT.inc()
                return answers  # the group's transaction failed, nothing committed: one by one
        for i, result in zip(sent, results, strict=True):
            answers[i] = result
        return answers

    async def _alone(self, key: str, item: Item) -> PostResult:
        posting, events, answer = item
        return await self._run(lambda conn: store.post(conn, posting, events, answer))
