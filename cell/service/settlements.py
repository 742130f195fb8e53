"""Use cases of ledger account settlements: create (gathering the settled account's unsettled posted entries, or
drafting), attach and detach entries while drafting, the status lifecycle, read, update, list; each change with its
event (cell.ledger.settlements.status_event), in its database transaction. The settlement
transaction is written by the posting service (transactions.prepare_posting, store.post) inside the settlement's
own database transaction: a settlement and its transaction commit together or not at all."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import asyncpg
from msgspec import UNSET

from cell.ledger.commands import SettlementCreate, SettlementEntries, SettlementUpdate
from cell.ledger.errors import NotFound, PostingRejected
from cell.ledger.models import EntryRequest, IdemKey, Posting, Rejection
from cell.ledger.settlements import opposite, settlement_leg, status_event, transition, validate_accounts
from cell.service import events, views
from cell.service.common import Page, merge_metadata, seq_page
from cell.service.context import CellContext
from cell.service.ledgers import create_idempotently
from cell.service.transactions import finish_posting, prepare_posting, render_posting, transition_status
from cell.store import settlements as store
from cell.store import tenants as store_tenants
from cell.store import transactions as store_transactions
from cell.store.transactions import PostResult

Written = tuple[Posting, PostResult] | None
RESOURCE = "ledger_account_settlement"


async def _settlement(conn: asyncpg.Connection, tenant_id: str, settlement_id) -> views.LedgerAccountSettlement:
    row = await store.fetch(conn, tenant_id, settlement_id)
    if row is None:
        raise NotFound(f"ledger account settlement {settlement_id} not found")
    return views.settlement(row)


async def _locked(conn: asyncpg.Connection, tenant_id: str, settlement_id) -> asyncpg.Record:
    await store_tenants.fence(conn, tenant_id)
    row = await store.fetch(conn, tenant_id, settlement_id, lock=True)
    if row is None:
        raise NotFound(f"ledger account settlement {settlement_id} not found")
    return row


def _leg(row, net: int) -> tuple[int, str | None] | Rejection:
    return settlement_leg(row["normal_balance"], net, row["allow_either_direction"])


async def _settle(ctx: CellContext, conn: asyncpg.Connection, tenant_id: str, row, status: str) -> Written:
    """Settle what the settlement holds: amount and direction from the held entries' net, and its transaction
    between the settled and the contra account written with `status` (none for a net of zero)."""
    leg = _leg(row, await store.net(conn, row["id"], row["normal_balance"]))
    if isinstance(leg, Rejection):
        raise PostingRejected(leg.detail, leg.code)
    amount, direction = leg
    written = None
    if amount:
        settled, contra = str(row["settled_ledger_account_id"]), str(row["contra_ledger_account_id"])
        posting, accounts = await prepare_posting(
            ctx, tenant_id, ledger_id=row["ledger_id"], entries=[EntryRequest(settled, direction, amount),
                                                                 EntryRequest(contra, opposite(direction), amount)],
            description=row["description"], status=status, effective_at=row["effective_at_upper_bound"],
            external_id=None, metadata={}, reverses_id=None, idem=None)
        written = posting, await store_transactions.post(conn, posting, render_posting(ctx, posting, accounts)[1])
        await store.claim_offset(conn, tenant_id, row["id"], posting.state.ledger_entries[0].id)
    await store.set_outcome(conn, tenant_id, row["id"], status=status, amount=amount, direction=direction,
                            transaction_id=written[0].state.id if written else None)
    return written


async def _finished(ctx: CellContext, written: Written, started: float) -> None:
    if written is not None:
        await finish_posting(ctx, *written, started)


async def _gather(ctx: CellContext, conn: asyncpg.Connection, tenant_id: str, settlement_id: uuid.UUID,
                  settled_id: str, upper: datetime) -> None:
    """The settled account's unsettled posted entries before the upper bound, claimed for the new settlement: at most
    settlement_entries_max of them, or none (the request is refused and its transaction rolled back)."""
    bound = ctx.settings.settlement_entries_max
    if await store.claim_gathered(conn, tenant_id, settlement_id, settled_id, upper, bound + 1) > bound:
        raise PostingRejected(f"more than {bound} entries of the settled account are unsettled before "
                              "effective_at_upper_bound: settle up to an earlier effective_at_upper_bound first",
                              "settlement_too_large")


async def create_settlement(ctx: CellContext, tenant_id: str, cmd: SettlementCreate,
                            idem: IdemKey | None) -> views.LedgerAccountSettlement:
    started = time.perf_counter()
    settled_id, contra_id = str(cmd.settled_ledger_account_id), str(cmd.contra_ledger_account_id)
    written: Written = None

    async def insert(conn: asyncpg.Connection, new_id: uuid.UUID) -> views.LedgerAccountSettlement:
        nonlocal written
        # The accounts are checked once the Idempotency-Key is claimed: a request sent again under its key is its
        # first answer, whatever became of them since (a settled account deleted: still that answer, not a 422).
        accounts = await ctx.cache.accounts(conn, tenant_id, [settled_id, contra_id], fresh=True)
        rejection = validate_accounts(settled_id, contra_id, accounts)
        if rejection is not None:
            raise PostingRejected(rejection.detail, rejection.code)
        settled = accounts[settled_id]
        await store.insert(conn, new_id, tenant_id, ledger_id=uuid.UUID(settled.ledger_id), settled_id=settled_id,
                           contra_id=contra_id, currency=settled.currency,
                           currency_exponent=settled.currency_exponent, status="drafting",
                           allow_either_direction=bool(cmd.allow_either_direction),
                           upper=cmd.effective_at_upper_bound, description=cmd.description, metadata=cmd.metadata)
        if cmd.status != "drafting":
            row = await store.fetch(conn, tenant_id, new_id, lock=True)
            await _gather(ctx, conn, tenant_id, new_id, settled_id, row["effective_at_upper_bound"])
            written = await _settle(ctx, conn, tenant_id, row, cmd.status)
        view = await _settlement(conn, tenant_id, new_id)
        await events.emit(ctx, conn, tenant_id, RESOURCE, "ledger_account_settlement.created", view)
        if cmd.status != "drafting":
            await events.emit(ctx, conn, tenant_id, RESOURCE, status_event("drafting", cmd.status), view)
        return view

    answer = await create_idempotently(ctx, tenant_id, idem, RESOURCE,
                                       views.LedgerAccountSettlement, insert,
                                       lambda conn, rid: _settlement(conn, tenant_id, rid))
    await _finished(ctx, written, started)
    return answer


async def get_settlement(ctx: CellContext, tenant_id: str, settlement_id: uuid.UUID) -> views.LedgerAccountSettlement:
    return await ctx.run(lambda conn: _settlement(conn, tenant_id, settlement_id))


async def update_settlement(ctx: CellContext, tenant_id: str, settlement_id: uuid.UUID,
                            cmd: SettlementUpdate) -> views.LedgerAccountSettlement:
    """Status (drafting -> pending | posted | archived, pending -> posted | archived), description, metadata. Its
    transaction moves with it; archiving releases its entries (another settlement may take them)."""
    started = time.perf_counter()

    async def work(conn: asyncpg.Connection) -> tuple[views.LedgerAccountSettlement, Written, bool]:
        written, moved = None, False
        async with conn.transaction():
            row = await _locked(conn, tenant_id, settlement_id)
            if cmd.status is not UNSET and cmd.status != row["status"]:
                rejection = transition(row["status"], cmd.status)
                if rejection is not None:
                    raise PostingRejected(rejection.detail, rejection.code)
                if row["status"] == "drafting" and cmd.status != "archived":
                    written = await _settle(ctx, conn, tenant_id, row, cmd.status)
                else:
                    if row["ledger_transaction_id"] is not None:
                        await transition_status(ctx, conn, tenant_id, row["ledger_transaction_id"], cmd.status)
                        moved = True
                    if cmd.status == "archived":
                        await store.release(conn, tenant_id, settlement_id)
                    await store.set_outcome(conn, tenant_id, settlement_id, status=cmd.status, amount=row["amount"],
                                            direction=row["settlement_entry_direction"])
            metadata = merge_metadata(row["metadata"], cmd.metadata)
            described = cmd.description is not UNSET and cmd.description != row["description"]
            status = row["status"] if cmd.status is UNSET else cmd.status
            annotated = described or (metadata is not None and metadata != row["metadata"])
            if annotated:
                await store.update(conn, tenant_id, settlement_id, description_set=described,
                                   description=cmd.description if described else None, metadata=metadata)
            view = await _settlement(conn, tenant_id, settlement_id)
            if annotated or status != row["status"]:  # a PATCH that changes nothing writes nothing: no event
                await events.emit(ctx, conn, tenant_id, RESOURCE, status_event(row["status"], status), view)
            return view, written, moved

    answer, written, moved = await ctx.run(work)
    await _finished(ctx, written, started)
    if moved and ctx.settings.posting_mode != "sync":
        await ctx.nudger.nudge(tenant_id, sorted({str(answer.settled_ledger_account_id),
                                                  str(answer.contra_ledger_account_id)}))
    return answer


async def change_entries(ctx: CellContext, tenant_id: str, settlement_id: uuid.UUID, cmd: SettlementEntries, *,
                         attach: bool) -> views.LedgerAccountSettlement:
    """Attach entries to a drafting settlement (posted entries of its settled account effective before its upper
    bound, held by no other settlement; at most settlement_entries_max in all, as one gathered at create) or detach
    them; its amount follows."""
    ids = list(dict.fromkeys(cmd.ledger_entry_ids))

    async def work(conn: asyncpg.Connection) -> views.LedgerAccountSettlement:
        async with conn.transaction():
            row = await _locked(conn, tenant_id, settlement_id)
            if row["status"] != "drafting":
                raise PostingRejected(f"ledger account settlement {settlement_id} is {row['status']}: entries change "
                                      "only while drafting", "settlement_not_drafting")
            if attach:
                fit = await store.settleable(conn, tenant_id, ids, row["settled_ledger_account_id"],
                                             row["effective_at_upper_bound"])
                unfit = [str(i) for i in ids if i not in fit]
                if unfit:
                    raise PostingRejected("only posted entries of the settled account effective before "
                                          "effective_at_upper_bound can be settled", "ledger_entry_not_settleable",
                                          {"ledger_entry_ids": unfit})
                before = await store.held(conn, settlement_id, ids)
                held = await store.claim(conn, tenant_id, settlement_id, ids)
                taken = [str(i) for i in ids if i not in held]
                if taken:
                    raise PostingRejected("these ledger entries are held by another ledger account settlement",
                                          "ledger_entry_already_settled", {"ledger_entry_ids": taken})
                changed = len(held) > len(before)
                bound = ctx.settings.settlement_entries_max
                if changed and await store.count_held(conn, settlement_id, bound + 1) > bound:
                    raise PostingRejected(f"a settlement holds at most {bound} entries: settle these in another",
                                          "settlement_too_large")
            else:
                changed = await store.release(conn, tenant_id, settlement_id, ids) > 0
            if not changed:  # entries it holds attached again, or others detached: no change, no event
                return await _settlement(conn, tenant_id, settlement_id)
            leg = _leg(row, await store.net(conn, settlement_id, row["normal_balance"]))
            amount, direction = (None, None) if isinstance(leg, Rejection) else leg
            await store.set_outcome(conn, tenant_id, settlement_id, status="drafting", amount=amount,
                                    direction=direction)
            view = await _settlement(conn, tenant_id, settlement_id)
            await events.emit(ctx, conn, tenant_id, RESOURCE, status_event("drafting", "drafting"), view)
            return view

    return await ctx.run(work)


async def list_settlements(ctx: CellContext, tenant_id: str, *, after_cursor: str | None, per_page: int,
                           **filters) -> Page[views.LedgerAccountSettlement]:
    return await seq_page(ctx, tenant_id, "ledger_account_settlements", after_cursor, per_page, views.settlement,
                          store.list_page, **filters)
