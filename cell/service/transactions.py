"""Use cases of ledger transactions: post (one round trip), read, transition, reverse, versions, list."""

from __future__ import annotations

import operator
import time
import uuid
from datetime import datetime, timezone

import asyncpg
import msgspec
from msgspec import UNSET

from cell.ledger.commands import (
    EntryCreate,
    PartialPostCreate,
    ReversalCreate,
    TransactionCreate,
    TransactionUpdate,
)
from cell.ledger.errors import NotFound, PostingRejected
from cell.ledger.models import (
    Account,
    Condition,
    EntryRequest,
    IdemKey,
    PartialPost,
    Posting,
    Rejection,
    TransactionState,
    VersionEntry,
)
from cell.ledger.posting import (
    accounts_to_apply,
    derive_ledger,
    reversal_entries,
    validate_partial_post,
    validate_posting,
)
from cell.service import events, views
from cell.service.common import (
    EffectivePosition,
    Page,
    SeqPosition,
    account_uuid,
    cursors,
    merge_metadata,
    new_ids,
    page_of,
    seq_page,
    uuid_text,
)
from cell.service.context import CellContext
from cell.service.idempotency import replay
from cell.service.metrics import POSTING_SECONDS, SYNC_LOCK_WAIT_SECONDS, count_posting
from cell.store import entries as store_entries
from cell.store import idempotency as store_idempotency
from cell.store import settlements as store_settlements
from cell.store import transactions as store
from cell.store.transactions import PostResult

BALANCE_LOCKS = ("pending_balance_amount", "posted_balance_amount", "available_balance_amount")
_ACCOUNT_OF = operator.attrgetter("ledger_account_id")  # an entry's account (a set of them without a comprehension)


_UNCONDITIONAL = Condition()  # an entry's without a balance lock or lock_version (most: made once)


def _entry_request(e: EntryCreate) -> EntryRequest:
    if (e.pending_balance_amount is None and e.posted_balance_amount is None and e.available_balance_amount is None
            and e.lock_version is None):
        condition = _UNCONDITIONAL
    else:
        balances = {}
        for field in BALANCE_LOCKS:
            lock = getattr(e, field)
            if lock is not None and lock.as_dict():
                balances[field] = lock.as_dict()
        condition = Condition(balances, e.lock_version)
    return EntryRequest(uuid_text(e.ledger_account_id), e.direction, e.amount, condition,
                        bool(e.show_resulting_ledger_account_balances), e.metadata)


async def _rows(conn: asyncpg.Connection, tenant_id: str, txn_id) -> tuple[asyncpg.Record, list]:
    row = await store.fetch(conn, tenant_id, txn_id)
    if row is None:
        raise NotFound(f"ledger transaction {txn_id} not found")
    return row, await store_entries.of_transactions(conn, tenant_id, [row["id"]])


async def _transaction(conn: asyncpg.Connection, tenant_id: str, txn_id) -> views.LedgerTransaction:
    row, entries = await _rows(conn, tenant_id, txn_id)
    return views.transaction(row, [views.entry(e, False) for e in entries])


async def _state(conn: asyncpg.Connection, tenant_id: str, txn_id) -> tuple[TransactionState, int]:
    """The transaction as its latest version records it, and that version's number."""
    state, version, _ = await _state_and_view(conn, tenant_id, txn_id)
    return state, version


async def _state_and_view(conn: asyncpg.Connection, tenant_id: str,
                          txn_id) -> tuple[TransactionState, int, views.LedgerTransaction]:
    """`_state`, and the transaction as the API renders it now."""
    row, entries = await _rows(conn, tenant_id, txn_id)
    view = views.transaction(row, [views.entry(e, False) for e in entries])
    state = TransactionState(
        id=row["id"], ledger_id=row["ledger_id"], description=row["description"], status=row["status"],
        effective_at=views.utc(row["effective_at"]), external_id=row["external_id"], metadata=row["metadata"],
        reverses_ledger_transaction_id=row["reverses_id"],
        ledger_entries=[VersionEntry(e["id"], e["ledger_account_id"], e["direction"], e["amount"]) for e in entries],
        ledgerable_type=row["ledgerable_type"], ledgerable_id=row["ledgerable_id"])
    return state, row["version"], view


async def _refuse_settlement_transaction(conn: asyncpg.Connection, tenant_id: str, txn_id) -> None:
    """A settlement's transaction moves with its settlement (PATCH /api/ledger_account_settlements/{id}), never alone:
    its status and the entries the settlement holds would part ways."""
    settlement_id = await store_settlements.of_transaction(conn, tenant_id, txn_id)
    if settlement_id is not None:
        raise PostingRejected(f"ledger transaction {txn_id} is ledger account settlement {settlement_id}'s: change "
                              "the settlement's status instead", "settlement_transaction")


async def transition_status(ctx: CellContext, conn: asyncpg.Connection, tenant_id: str, txn_id, status: str) -> None:
    """Inside the caller's database transaction: a pending transaction posted or archived (a settlement's, moved with
    it). The caller nudges the accounts after the commit."""
    current, version, view = await _state_and_view(conn, tenant_id, txn_id)
    drafts = None
    if ctx.settings.events_enabled:
        drafts = [events.transaction_event(_status_event(status), _changed(view, status=status))]
    result = await store.transition(conn, tenant_id, expected_version=version, status=status, description=None,
                                    metadata=None, apply_all=ctx.settings.posting_mode == "sync",
                                    state=msgspec.structs.replace(current, status=status), events=drafts)
    if result.lock_wait_s:
        SYNC_LOCK_WAIT_SECONDS.observe(result.lock_wait_s)
    count_posting(status)


def _unstamped(posting: Posting, accounts: dict[str, Account]) -> views.LedgerTransaction:
    """The transaction a posting writes, rendered before the call: what the database stamps (the commit time, the
    entries applied now, an archive on a failed balance lock) is views.stamp_post's, for the answer and the event."""
    before = datetime.now(timezone.utc)  # replaced by the commit time
    return views.unwritten_transaction(posting.state, posting.entries, accounts,
                                       posting.partially_posts.id if posting.partially_posts else None, before)


class _Kept(msgspec.Struct, frozen=True):
    """What a posting's Idempotency-Key keeps as its answer (`ledger_post`'s p_answer): the transaction rendered
    before the call and the entries whose resulting balances the answer shows; the routine's facts finish it."""

    view: views.LedgerTransaction
    show: frozenset[uuid.UUID] = frozenset()


_kept_encoder = msgspec.json.Encoder()
_kept_decoder = msgspec.json.Decoder(_Kept)


def _kept(posting: Posting, unstamped: views.LedgerTransaction) -> _Kept:
    if not posting.apply_accounts:  # an entry showing its resulting balances is applied now (accounts_to_apply)
        return _Kept(unstamped)
    return _Kept(unstamped, frozenset(new.id for new, e in zip(posting.state.ledger_entries, posting.entries)
                                      if e.show_resulting_balances))


def _posted(kept: _Kept, result: PostResult) -> views.LedgerTransaction:
    """The answer to a posting, from what was written and what `ledger_post` reported: the first answer, and a
    replay's from what the key kept (so a replay is the first answer, byte for byte)."""
    applied = {str(r.id): msgspec.structs.asdict(r) for r in result.entries} if result.entries else {}
    return views.stamp_post(kept.view, result.created_at, applied, result.archived_reason, kept.show)


def _replayed(kept: bytes, facts: str) -> views.LedgerTransaction:
    return _posted(_kept_decoder.decode(kept), store.post_result(facts))


def _changed(view: views.LedgerTransaction, **changes) -> views.LedgerTransaction:
    """A transaction rendered with a change, before the routine writes it (the next version; views.stamp_update
    stamps its time)."""
    status = changes.get("status", view.status)
    entries = [msgspec.structs.replace(e, status=status) for e in view.ledger_entries]
    return msgspec.structs.replace(view, **changes, ledger_entries=entries, version=view.version + 1)


def _status_event(status: str | None) -> str:
    return {"posted": "ledger_transaction.posted", "archived": "ledger_transaction.archived"}.get(
        status or "", "ledger_transaction.updated")


async def prepare_posting(ctx: CellContext, tenant_id: str, *, ledger_id: uuid.UUID | None,
                          entries: list[EntryRequest], description: str | None, status: str,
                          effective_at: datetime | None, external_id: str | None, metadata: dict,
                          reverses_id: uuid.UUID | None, idem: IdemKey | None, ledgerable_type: str | None = None,
                          ledgerable_id: str | None = None,
                          partially_posts: tuple[TransactionState, int, views.LedgerTransaction] | None = None,
                          archive_on_lock_failure: bool = False) -> tuple[Posting, dict[str, Account]]:
    """A validated posting, its ids chosen, ready for `store.post` (the one way a ledger transaction is written; a
    use case that writes one inside its own database transaction, a settlement, calls this and store.post)."""
    accounts = await ctx.cache.accounts(ctx.pool, tenant_id, sorted(set(map(_ACCOUNT_OF, entries))))
    if ledger_id is None:
        derived = derive_ledger(entries, accounts)
        if isinstance(derived, Rejection):
            count_posting(derived.code)
            raise PostingRejected(derived.detail, derived.code)
        ledger_id = account_uuid(derived)
    ledger_text = uuid_text(ledger_id)
    if not await ctx.cache.ledger_exists(ctx.pool, tenant_id, ledger_text):
        raise PostingRejected(f"ledger {ledger_id} not found", "ledger_not_found")
    rejection = validate_posting(ledger_text, entries, accounts, ctx.settings.entries_per_transaction_max)
    if rejection is not None:
        count_posting(rejection.code)
        raise PostingRejected(rejection.detail, rejection.code)

    transaction_id, *entry_ids = new_ids(1 + len(entries))
    state = TransactionState(
        id=transaction_id, ledger_id=ledger_id, description=description, status=status,
        effective_at=views.utc(effective_at or datetime.now(timezone.utc)), external_id=external_id,
        metadata=metadata, reverses_ledger_transaction_id=reverses_id,
        ledger_entries=[VersionEntry(entry_id, account_uuid(e.ledger_account_id), e.direction, e.amount)
                        for entry_id, e in zip(entry_ids, entries)], ledgerable_type=ledgerable_type,
        ledgerable_id=ledgerable_id)
    partial = None
    if partially_posts is not None:
        pending, version, _ = partially_posts
        partial = PartialPost(id=pending.id, expected_version=version, apply_all=ctx.settings.posting_mode == "sync",
                              snapshot=msgspec.structs.replace(pending, status="archived"))
    posting = Posting(tenant_id=tenant_id, state=state, entries=entries, idempotency=idem, partially_posts=partial,
                      apply_accounts=accounts_to_apply(entries, ctx.settings.posting_mode),
                      archive_on_lock_failure=archive_on_lock_failure)
    return posting, accounts


async def finish_posting(ctx: CellContext, posting: Posting, result: PostResult, started: float) -> None:
    """After the posting committed: its metrics, and the nudge for the accounts whose effects were queued."""
    if posting.apply_accounts:
        SYNC_LOCK_WAIT_SECONDS.observe(result.lock_wait_s)
    if result.archived_reason is not None or posting.state.status == "archived":  # no balance effect: no nudge
        count_posting("archived_" + (result.archived_reason or "at_creation"))
        POSTING_SECONDS.observe(time.perf_counter() - started)
        return
    state, partial = posting.state, posting.partially_posts
    if result.entries:
        applied = {r.id for r in result.entries}
        unapplied = sorted({e.ledger_account_id for new, e in zip(state.ledger_entries, posting.entries)
                            if new.id not in applied})
    else:  # an async posting applies nothing now
        unapplied = sorted(set(map(_ACCOUNT_OF, posting.entries)))
    if partial is not None and ctx.settings.posting_mode != "sync":  # the archived entries' effects are queued
        unapplied = sorted(set(unapplied) | {uuid_text(e.ledger_account_id) for e in partial.snapshot.ledger_entries})
    if unapplied:
        await ctx.nudger.nudge(posting.tenant_id, unapplied)
    count_posting("posted_sync" if not unapplied else "posted_async")
    POSTING_SECONDS.observe(time.perf_counter() - started)


def render_posting(ctx: CellContext, posting: Posting, accounts: dict[str, Account],
                   reverses: views.LedgerTransaction | None = None,
                   partially_posts: views.LedgerTransaction | None = None,
                   ) -> tuple[views.LedgerTransaction, list | None]:
    """The transaction a posting writes, rendered before the call, and the events `ledger_post` writes in the
    posting's transaction (None when events are off): created, and the reversed or partially posted original's."""
    unstamped = _unstamped(posting, accounts)
    if not ctx.settings.events_enabled:
        return unstamped, None
    drafts = [events.transaction_event(events.TRANSACTION_CREATED, unstamped)]
    if reverses is not None and posting.state.status != "archived":  # an archived reversal reverses nothing
        drafts.append(events.transaction_event("ledger_transaction.reversed", msgspec.structs.replace(
            reverses, reversed_by_ledger_transaction_id=posting.state.id)))
    if partially_posts is not None:
        drafts.append(events.transaction_event("ledger_transaction.archived",
                                               _changed(partially_posts, status="archived")))
    return unstamped, drafts


async def _post(ctx: CellContext, tenant_id: str, *, idem: IdemKey | None,
                reverses: views.LedgerTransaction | None = None, **fields) -> views.LedgerTransaction:
    started = time.perf_counter()
    posting, accounts = await prepare_posting(ctx, tenant_id, idem=idem, **fields)
    partial = fields.get("partially_posts")
    return await _write(ctx, posting, accounts, started, reverses, partial[2] if partial else None)


async def _write(ctx: CellContext, posting: Posting, accounts: dict[str, Account], started: float,
                 reverses: views.LedgerTransaction | None = None,
                 partially_posts: views.LedgerTransaction | None = None) -> views.LedgerTransaction:
    """A prepared posting written (alone, or with others: group commit) and answered; `reverses`, `partially_posts`:
    the transaction it reverses or partially posts, as rendered before (their events are written with it)."""
    unstamped, drafts = render_posting(ctx, posting, accounts, reverses, partially_posts)
    kept = _kept(posting, unstamped)
    # With a key, the answer rendered now is kept with it by ledger_post itself: one statement, no later store.
    idem = posting.idempotency
    answer_kept = _kept_encoder.encode(kept) if idem is not None else None
    try:
        result = await ctx.posting_groups.post(posting, drafts, answer_kept)  # alone, or with others (group commit)
    except PostingRejected as exc:
        count_posting(exc.code)
        raise
    if result.replay:
        count_posting("replayed")
        tenant_id = posting.tenant_id
        return await ctx.run(lambda conn: replay(conn, tenant_id, idem, views.LedgerTransaction,
                                                 lambda c, rid: _transaction(c, tenant_id, rid), _replayed))
    answer = _posted(kept, result)
    await finish_posting(ctx, posting, result, started)
    return answer


def _prepare_create(ctx: CellContext, tenant_id: str, cmd: TransactionCreate, idem: IdemKey | None):
    """prepare_posting's coroutine for a new transaction."""
    return prepare_posting(ctx, tenant_id, ledger_id=cmd.ledger_id,
                           entries=[_entry_request(e) for e in cmd.ledger_entries], description=cmd.description,
                           status=cmd.status, effective_at=cmd.effective_at, external_id=cmd.external_id,
                           metadata=cmd.metadata, reverses_id=None, idem=idem, ledgerable_type=cmd.ledgerable_type,
                           ledgerable_id=cmd.ledgerable_id,
                           archive_on_lock_failure=cmd.archive_on_balance_lock_failure)


async def create_transaction(ctx: CellContext, tenant_id: str, cmd: TransactionCreate,
                             idem: IdemKey | None) -> views.LedgerTransaction:
    started = time.perf_counter()
    posting, accounts = await _prepare_create(ctx, tenant_id, cmd, idem)
    return await _write(ctx, posting, accounts, started)


async def prepare_create(ctx: CellContext, tenant_id: str, cmd: TransactionCreate,
                         idem: IdemKey | None) -> tuple[Posting, views.LedgerTransaction, list | None]:
    """A new transaction checked and made ready as create_transaction would post it: the posting, the transaction
    rendered before the call and the events written with it (render_posting; the bulk path writes many in one
    database transaction, with store.post_many)."""
    posting, accounts = await _prepare_create(ctx, tenant_id, cmd, idem)
    return posting, *render_posting(ctx, posting, accounts)


def posted_unapplied(unstamped: views.LedgerTransaction, created_at: datetime) -> views.LedgerTransaction:
    """The answer to a posting written with nothing applied in it (async entries only, no balance lock): what
    create_transaction answers, without a read back."""
    return views.stamp_post(unstamped, created_at, {}, None)


async def transactions_by_id(conn: asyncpg.Connection, tenant_id: str,
                             ids: list[uuid.UUID]) -> dict[uuid.UUID, views.LedgerTransaction]:
    """Many transactions as GET renders them, in two queries."""
    rows = await store.fetch_many(conn, tenant_id, ids) if ids else []
    entries = await store_entries.of_transactions(conn, tenant_id, [r["id"] for r in rows]) if rows else []
    by_txn: dict = {}
    for e in entries:
        by_txn.setdefault(e["transaction_id"], []).append(views.entry(e, False))
    return {r["id"]: views.transaction(r, by_txn.get(r["id"], [])) for r in rows}


async def reverse_transaction(ctx: CellContext, tenant_id: str, txn_id: uuid.UUID, cmd: ReversalCreate,
                              idem: IdemKey | None) -> views.LedgerTransaction:
    """Whether it may be reversed (posted, not reversed yet) is `ledger_post`'s to say, under the row lock; an
    Idempotency-Key of a reversal that succeeded is replayed there before that check."""
    original, _, original_view = await ctx.run(lambda conn: _state_and_view(conn, tenant_id, txn_id))
    entries = reversal_entries([EntryRequest(str(e.ledger_account_id), e.direction, e.amount)
                                for e in original.ledger_entries])
    description = cmd.description if cmd.description is not None else f"Reversal of {txn_id}"
    # Effective when the original was, unless told otherwise (Modern Treasury's default).
    effective_at = cmd.effective_at if cmd.effective_at is not None else original_view.effective_at
    return await _post(ctx, tenant_id, ledger_id=original.ledger_id, entries=entries, description=description,
                       status=cmd.status, effective_at=effective_at, external_id=cmd.external_id,
                       metadata=cmd.metadata, reverses_id=txn_id, idem=idem, ledgerable_type=cmd.ledgerable_type,
                       ledgerable_id=cmd.ledgerable_id, reverses=original_view)


async def partial_post(ctx: CellContext, tenant_id: str, txn_id: uuid.UUID, cmd: PartialPostCreate,
                       idem: IdemKey | None) -> views.LedgerTransaction:
    """A posted transaction of (no larger) parts of a pending one's entries; the pending one is archived in the same
    database transaction. Whether it is still pending is `ledger_post`'s to say, under the row lock (a replayed
    Idempotency-Key is answered before that check). A transaction already no longer pending is refused as that
    (invalid_status_transition) before its parts are looked at, as a PATCH of its entries is, unless its
    Idempotency-Key was used (then the key answers)."""
    async def pending_state(conn: asyncpg.Connection) -> tuple[TransactionState, int, views.LedgerTransaction]:
        await _refuse_settlement_transaction(conn, tenant_id, txn_id)
        state = await _state_and_view(conn, tenant_id, txn_id)
        if state[0].status != "pending" and not await _key_used(conn, tenant_id, idem):
            count_posting("invalid_status_transition")  # said first, whatever the parts asked
            raise PostingRejected(f"only a pending transaction can be partially posted; this one is "
                                  f"{state[0].status}", "invalid_status_transition")
        return state

    pending, version, pending_view = await ctx.run(pending_state)
    entries = [_entry_request(e) for e in cmd.posted_ledger_entries]
    rejection = validate_partial_post(
        [EntryRequest(str(e.ledger_account_id), e.direction, e.amount) for e in pending.ledger_entries], entries)
    if rejection is not None:
        count_posting(rejection.code)
        raise PostingRejected(rejection.detail, rejection.code)
    return await _post(ctx, tenant_id, ledger_id=pending.ledger_id, entries=entries,
                       description=cmd.description if cmd.description is not None else pending.description,
                       status="posted", effective_at=cmd.effective_at or pending.effective_at, external_id=None,
                       metadata=cmd.metadata or pending.metadata, reverses_id=None, idem=idem,
                       ledgerable_type=pending.ledgerable_type, ledgerable_id=pending.ledgerable_id,
                       partially_posts=(pending, version, pending_view))


async def _key_used(conn: asyncpg.Connection, tenant_id: str, idem: IdemKey | None) -> bool:
    """Whether the request's Idempotency-Key was used: then the key says the answer (its first request's again, or
    idempotency_key_reused), whatever became of what it wrote."""
    return idem is not None and await store_idempotency.fetch(conn, tenant_id, idem.key) is not None


async def get_transaction(ctx: CellContext, tenant_id: str, txn_id: uuid.UUID) -> views.LedgerTransaction:
    return await ctx.run(lambda conn: _transaction(conn, tenant_id, txn_id))


async def _replace_entries(ctx: CellContext, conn: asyncpg.Connection, tenant_id: str, cmd: TransactionUpdate,
                           current: TransactionState, version: int, view: views.LedgerTransaction) -> list[str]:
    """A pending transaction's entries replaced (PATCH `ledger_entries`, or `effective_at` alone: the same entries
    again at the new time), inside the caller's database transaction: the old ones discarded, the new ones written
    as the next version (`ledger_replace_entries`, which says whether it is still pending under the row lock).
    Returns the accounts of the old and new entries (to nudge after the commit); [] when nothing changes."""
    effective_at = current.effective_at if cmd.effective_at is UNSET else views.utc(cmd.effective_at)
    if cmd.ledger_entries is UNSET:
        if effective_at == current.effective_at:
            return []
        entries = [EntryRequest(uuid_text(e.ledger_account_id), e.direction, e.amount, metadata=e.metadata)
                   for e in view.ledger_entries]
    else:
        entries = [_entry_request(e) for e in cmd.ledger_entries]
    if current.status != "pending":
        raise PostingRejected(f"only a pending ledger transaction's entries or effective_at can change; "
                              f"this one is {current.status}", "invalid_status_transition")
    await _refuse_settlement_transaction(conn, tenant_id, current.id)
    accounts = await ctx.cache.accounts(conn, tenant_id, sorted({e.ledger_account_id for e in entries}))
    rejection = validate_posting(str(current.ledger_id), entries, accounts, ctx.settings.entries_per_transaction_max)
    if rejection is not None:
        count_posting(rejection.code)
        raise PostingRejected(rejection.detail, rejection.code)
    state = msgspec.structs.replace(current, effective_at=effective_at, ledger_entries=[
        VersionEntry(entry_id, account_uuid(e.ledger_account_id), e.direction, e.amount)
        for entry_id, e in zip(new_ids(len(entries)), entries)])
    posting = Posting(tenant_id=tenant_id, state=state, entries=entries,
                      apply_accounts=accounts_to_apply(entries, ctx.settings.posting_mode))
    drafts = None
    if ctx.settings.events_enabled:  # rendered now, written by ledger_replace_entries in its transaction
        changed = msgspec.structs.replace(view, effective_at=effective_at, effective_date=effective_at.date(),
                                          ledger_entries=_unstamped(posting, accounts).ledger_entries,
                                          version=view.version + 1)
        drafts = [events.transaction_event("ledger_transaction.updated", changed)]
    result = await store.replace_entries(conn, posting, expected_version=version,
                                         apply_all=ctx.settings.posting_mode == "sync", events=drafts)
    if result.lock_wait_s:
        SYNC_LOCK_WAIT_SECONDS.observe(result.lock_wait_s)
    count_posting("entries_replaced")
    return sorted({uuid_text(e.ledger_account_id) for e in view.ledger_entries}
                  | {e.ledger_account_id for e in entries})


async def update_transaction(ctx: CellContext, tenant_id: str, txn_id: uuid.UUID,
                             cmd: TransactionUpdate) -> views.LedgerTransaction:
    """Status (pending -> posted | archived, checked by `ledger_transition`), description, metadata, external and
    ledgerable ids (an external id is unique among the ledger's transactions not archived), and a pending one's
    entries and effective time (`_replace_entries`, first, in one database transaction with the rest). A concurrent
    change is a version conflict: ctx.run runs `apply_update` again, which re-reads the transaction. A PATCH that
    changes nothing writes nothing (no version, updated_at kept): so identical PATCHes racing make one version, not
    many."""
    updated = await ctx.run(lambda conn: apply_update(ctx, conn, tenant_id, txn_id, cmd))
    await after_update(ctx, tenant_id, updated)
    return await get_transaction(ctx, tenant_id, txn_id)


class Updated(msgspec.Struct, frozen=True):
    """What `apply_update` did: the status it moved the transaction to (None: unchanged), the accounts to nudge."""

    status: str | None
    touched: list[str]


async def after_update(ctx: CellContext, tenant_id: str, updated: Updated) -> None:
    """After an update's commit: counted, and its accounts nudged (unless every entry is applied in it: sync)."""
    if updated.status is not None:
        count_posting(updated.status)
    if ctx.settings.posting_mode != "sync" and updated.touched:
        await ctx.nudger.nudge(tenant_id, updated.touched)


async def apply_update(ctx: CellContext, conn: asyncpg.Connection, tenant_id: str, txn_id: uuid.UUID,
                       cmd: TransactionUpdate) -> Updated:
    """`update_transaction`'s change, on the caller's connection (inside the caller's database transaction when it
    holds one: a bulk update's, which writes its result with it). The caller runs `after_update` after the commit."""

    async def change(conn: asyncpg.Connection, current: TransactionState, version: int,
                     view: views.LedgerTransaction) -> tuple[TransactionState, str | None]:
        status = None if cmd.status is UNSET or cmd.status == current.status else cmd.status
        metadata = merge_metadata(current.metadata, cmd.metadata)
        if metadata == current.metadata:
            metadata = None
        description_changed = cmd.description is not UNSET and cmd.description != current.description
        description = cmd.description if description_changed else None
        changes: dict = {}
        if status is not None:
            changes["status"] = status
        if metadata is not None:
            changes["metadata"] = metadata
        if description_changed:
            changes["description"] = description
        if cmd.external_id is not UNSET and cmd.external_id != current.external_id:
            changes["external_id"] = cmd.external_id
        if cmd.ledgerable_type is not UNSET and (cmd.ledgerable_type, cmd.ledgerable_id) != (
                current.ledgerable_type, current.ledgerable_id):
            changes.update(ledgerable_type=cmd.ledgerable_type, ledgerable_id=cmd.ledgerable_id)
        if not changes:
            return current, None
        if status is not None:
            await _refuse_settlement_transaction(conn, tenant_id, txn_id)
        drafts = None
        if ctx.settings.events_enabled:  # rendered now, written by ledger_transition in its transaction
            drafts = [events.transaction_event(_status_event(status), _changed(view, **changes))]
        result = await store.transition(
            conn, tenant_id, expected_version=version, status=status, description=description, metadata=metadata,
            external_id=changes.get("external_id"), ledgerable=(changes.get("ledgerable_type"),
                                                                changes.get("ledgerable_id")),
            apply_all=ctx.settings.posting_mode == "sync", state=msgspec.structs.replace(current, **changes),
            events=drafts, cleared=[field for field in ("description", "external_id")
                                    if field in changes and changes[field] is None])
        if status is not None and result.lock_wait_s:
            SYNC_LOCK_WAIT_SECONDS.observe(result.lock_wait_s)
        return current, status

    def updated(current: TransactionState, status: str | None, replaced: list[str]) -> Updated:
        touched = set(replaced) | ({str(e.ledger_account_id) for e in current.ledger_entries} if status else set())
        return Updated(status, sorted(touched))

    current, version, view = await _state_and_view(conn, tenant_id, txn_id)
    if cmd.ledger_entries is UNSET and cmd.effective_at is UNSET:
        return updated(*await change(conn, current, version, view), [])
    async with conn.transaction():
        replaced = await _replace_entries(ctx, conn, tenant_id, cmd, current, version, view)
        if replaced:
            current, version, view = await _state_and_view(conn, tenant_id, txn_id)
        return updated(*await change(conn, current, version, view), replaced)


async def list_versions(ctx: CellContext, tenant_id: str, txn_id: uuid.UUID) -> list[views.LedgerTransactionVersion]:
    rows = await ctx.run(lambda conn: store.fetch_versions(conn, tenant_id, txn_id))
    if not rows:
        raise NotFound(f"ledger transaction {txn_id} not found")
    return [views.version(r) for r in rows]


async def list_all_versions(ctx: CellContext, tenant_id: str, *, after_cursor: str | None, per_page: int,
                            **filters) -> Page[views.LedgerTransactionVersion]:
    """Every version of the tenant's transactions (GET /api/ledger_transaction_versions), oldest first."""
    return await seq_page(ctx, tenant_id, "ledger_transaction_versions", after_cursor, per_page, views.version,
                          store.list_versions_page, **filters)


async def list_transactions(ctx: CellContext, tenant_id: str, *, after_cursor: str | None, per_page: int,
                            order_by: str = "created_at", descending: bool = False,
                            **filters) -> Page[views.LedgerTransaction]:
    # The ordering is part of the list's name: a cursor of one ordering does not open in another.
    name = "ledger_transactions" if (order_by, descending) == ("created_at", False) else \
        f"ledger_transactions order_by[{order_by}]={'desc' if descending else 'asc'}"
    box = cursors(ctx.settings, tenant_id, name)
    by_effective_at = order_by == "effective_at"
    after = box.open(after_cursor, EffectivePosition if by_effective_at else SeqPosition)

    async def work(conn: asyncpg.Connection) -> Page[views.LedgerTransaction]:
        rows = await store.list_page(conn, tenant_id, after=after, limit=per_page + 1, order_by=order_by,
                                     descending=descending, **filters)
        shown = rows[:per_page]
        entries = await store_entries.of_transactions(conn, tenant_id, [r["id"] for r in shown]) if shown else []
        by_txn: dict = {}
        for e in entries:
            by_txn.setdefault(e["transaction_id"], []).append(views.entry(e, False))
        return page_of(rows, per_page, lambda r: views.transaction(r, by_txn.get(r["id"], [])),
                       (lambda r: box.seal((r["effective_at"], r["seq"]))) if by_effective_at
                       else (lambda r: box.seal((r["seq"],))))

    return await ctx.run(work)
