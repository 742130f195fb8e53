"""Use cases of ledger transactions: post (one round trip), read, transition, reverse, versions, list."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import asyncpg
from msgspec import UNSET

from cell.api.schemas import ReversalCreate, TransactionCreate, TransactionUpdate
from cell.ledger.models import Condition, EntryRequest
from cell.ledger.posting import accounts_to_apply, reversal_entries, validate_posting
from cell.service import render
from cell.service.common import Page, encode, encode_cursor, merge_metadata
from cell.service.context import CellContext
from cell.service.errors import NotFound, PostingRejected, RetryableConflict
from cell.service.idempotency import IdemKey, replay, store_response
from cell.service.metrics import POSTING_SECONDS, POSTINGS, SYNC_LOCK_WAIT_SECONDS
from cell.store import listing
from cell.store.queries import Q

TRANSITION_RETRIES_MAX = 5


def _entry_request(e) -> EntryRequest:
    balances = {}
    for field in ("pending_balance_amount", "posted_balance_amount", "available_balance_amount"):
        lock = getattr(e, field)
        if lock is not None and lock.as_dict():
            balances[field] = lock.as_dict()
    return EntryRequest(str(e.ledger_account_id), e.direction, e.amount,
                        Condition(balances, e.lock_version), e.show_resulting_ledger_account_balances)


def _snapshot(txn: dict) -> dict:
    """What a version records (and the audit chain hashes): the transaction without volatile fields."""
    keep = ("id", "ledger_id", "description", "status", "effective_at", "external_id", "metadata",
            "reverses_ledger_transaction_id")
    snap = {k: txn[k] for k in keep}
    snap["ledger_entries"] = [{"id": e["id"], "ledger_account_id": e["ledger_account_id"],
                               "direction": e["direction"], "amount": e["amount"]} for e in txn["ledger_entries"]]
    return snap


async def _render_transaction(conn: asyncpg.Connection, tenant_id: str, txn_id,
                              show_for: set[str] | None = None) -> dict:
    row = await conn.fetchrow(Q["fetch_transaction"], tenant_id, txn_id)
    if row is None:
        raise NotFound(f"ledger transaction {txn_id} not found")
    entries = await conn.fetch(Q["fetch_transaction_entries"], [row["id"]])
    return render.transaction(row, [render.entry(e, show_for is not None and str(e["id"]) in show_for)
                                    for e in entries])


async def _post(ctx: CellContext, tenant_id: str, *, ledger_id: uuid.UUID, entries: list[EntryRequest],
                description, status: str, effective_at: datetime | None, external_id, metadata: dict,
                reverses_id: uuid.UUID | None, idem: IdemKey | None) -> tuple[int, bytes]:
    started = time.perf_counter()
    accounts = await ctx.cache.accounts(ctx.pool, tenant_id, sorted({e.ledger_account_id for e in entries}))
    if not await ctx.cache.ledger_exists(ctx.pool, tenant_id, str(ledger_id)):
        raise PostingRejected(f"ledger {ledger_id} not found", "ledger_not_found")
    rejection = validate_posting(str(ledger_id), entries, accounts, ctx.settings.entries_per_transaction_max)
    if rejection is not None:
        POSTINGS.labels(rejection.code).inc()
        raise PostingRejected(rejection.detail, rejection.code)

    txn_id = uuid.uuid4()
    entry_ids = [uuid.uuid4() for _ in entries]
    effective_at = effective_at or datetime.now(timezone.utc)
    apply = accounts_to_apply(entries, ctx.settings.posting_mode)
    checks = []
    for e in entries:
        if not e.condition.is_empty():
            check: dict = {"account_id": e.ledger_account_id, **e.condition.balances}
            if e.condition.lock_version is not None:
                check["lock_version"] = e.condition.lock_version
            checks.append(check)
    rendered_entries = [{"id": str(eid), "ledger_account_id": e.ledger_account_id, "direction": e.direction,
                         "amount": e.amount} for eid, e in zip(entry_ids, entries)]
    txn_view = {"id": str(txn_id), "ledger_id": str(ledger_id), "description": description, "status": status,
                "effective_at": render.iso(effective_at), "external_id": external_id, "metadata": metadata,
                "reverses_ledger_transaction_id": str(reverses_id) if reverses_id else None,
                "ledger_entries": rendered_entries}

    try:
        result = await ctx.run(lambda conn: conn.fetchval(
            Q["post_transaction"], tenant_id, idem.key if idem else None, idem.request_hash if idem else None,
            txn_id, ledger_id, description, status, effective_at, external_id, metadata, reverses_id,
            entry_ids, [e.ledger_account_id for e in entries], [e.direction for e in entries],
            [e.amount for e in entries], apply, checks, _snapshot(txn_view)))
    except PostingRejected as exc:
        POSTINGS.labels(exc.code).inc()
        raise
    if result.get("replay"):
        POSTINGS.labels("replayed").inc()
        return await ctx.run(lambda conn: replay(
            conn, tenant_id, idem, lambda c, rid: _render_bytes(c, tenant_id, rid)))

    if apply:
        SYNC_LOCK_WAIT_SECONDS.observe(result.get("lock_wait_s", 0.0))
    results = {r["id"]: r for r in result["entries"]}
    created_at = result["created_at"]
    out_entries = []
    for eid, e in zip(entry_ids, entries):
        acc = accounts[e.ledger_account_id]
        r = results.get(str(eid))
        row = {"id": eid, "transaction_id": txn_id, "ledger_account_id": e.ledger_account_id,
               "direction": e.direction, "amount": e.amount, "effective_at": effective_at, "status": status,
               "currency": acc.currency, "currency_exponent": acc.currency_exponent,
               "normal_balance": acc.normal_balance, "lock_version": r["lock_version"] if r else None,
               "pending_debits": r["pending_debits"] if r else 0, "pending_credits": r["pending_credits"] if r else 0,
               "posted_debits": r["posted_debits"] if r else 0, "posted_credits": r["posted_credits"] if r else 0,
               "created_at": datetime.fromisoformat(created_at)}
        out_entries.append(render.entry(row, e.show_resulting_balances))
    created = datetime.fromisoformat(created_at)
    body = encode(render.transaction({
        "id": txn_id, "ledger_id": ledger_id, "description": description, "status": status,
        "effective_at": effective_at, "external_id": external_id, "metadata": metadata, "version": 1,
        "reverses_id": reverses_id, "reversed_by_id": None, "posted_at": created if status == "posted" else None,
        "archived_at": None, "created_at": created, "updated_at": created}, out_entries))
    await store_response(ctx.pool, tenant_id, idem, 201, body)
    unapplied = sorted({e.ledger_account_id for e, eid in zip(entries, entry_ids) if str(eid) not in results})
    if unapplied:
        await ctx.nudger.nudge(tenant_id, unapplied)
    POSTINGS.labels("posted_sync" if not unapplied else "posted_async").inc()
    POSTING_SECONDS.observe(time.perf_counter() - started)
    return 201, body


async def _render_bytes(conn, tenant_id: str, txn_id) -> bytes:
    return encode(await _render_transaction(conn, tenant_id, txn_id))


async def create_transaction(ctx: CellContext, tenant_id: str, req: TransactionCreate,
                             idem: IdemKey | None) -> tuple[int, bytes]:
    return await _post(ctx, tenant_id, ledger_id=req.ledger_id, entries=[_entry_request(e) for e in req.ledger_entries],
                       description=req.description, status=req.status, effective_at=req.effective_at,
                       external_id=req.external_id, metadata=req.metadata, reverses_id=None, idem=idem)


async def reverse_transaction(ctx: CellContext, tenant_id: str, txn_id: uuid.UUID, req: ReversalCreate,
                              idem: IdemKey | None) -> tuple[int, bytes]:
    original = await ctx.run(lambda conn: _render_transaction(conn, tenant_id, txn_id))
    if original["status"] != "posted":
        raise PostingRejected(f"only a posted transaction can be reversed (this one is {original['status']})",
                              "invalid_status_transition")
    # With an Idempotency-Key, a retry of the reversal that succeeded must reach the replay in ledger_post.
    if original["reversed_by_ledger_transaction_id"] and idem is None:
        raise PostingRejected("this ledger transaction has already been reversed", "already_reversed")
    entries = reversal_entries([EntryRequest(e["ledger_account_id"], e["direction"], e["amount"])
                                for e in original["ledger_entries"]])
    description = req.description if req.description is not None else f"Reversal of {txn_id}"
    return await _post(ctx, tenant_id, ledger_id=uuid.UUID(original["ledger_id"]), entries=entries,
                       description=description, status=req.status, effective_at=req.effective_at,
                       external_id=req.external_id, metadata=req.metadata, reverses_id=txn_id, idem=idem)


async def get_transaction(ctx: CellContext, tenant_id: str, txn_id: uuid.UUID) -> bytes:
    return await ctx.run(lambda conn: _render_bytes(conn, tenant_id, txn_id))


async def update_transaction(ctx: CellContext, tenant_id: str, txn_id: uuid.UUID, req: TransactionUpdate) -> bytes:
    for attempt in range(TRANSITION_RETRIES_MAX):
        current = await ctx.run(lambda conn: _render_transaction(conn, tenant_id, txn_id))
        status = None if req.status is UNSET or req.status == current["status"] else req.status
        if status is not None and (current["status"] != "pending" or status == "pending"):
            raise PostingRejected(f"cannot move a {current['status']} transaction to {status}",
                                  "invalid_status_transition")
        metadata = None if req.metadata is UNSET else merge_metadata(
            current["metadata"], req.metadata, ctx.settings.metadata_keys_max)
        description = None if req.description is UNSET else req.description
        nxt = dict(current)
        if status is not None:
            nxt["status"] = status
        if metadata is not None:
            nxt["metadata"] = metadata
        if req.description is not UNSET:
            nxt["description"] = description
        try:
            result = await ctx.run(lambda conn: conn.fetchval(
                Q["transition_transaction"], tenant_id, txn_id, current["version"], status, description, metadata,
                ctx.settings.posting_mode == "sync", _snapshot(nxt)))
        except RetryableConflict:
            if attempt + 1 == TRANSITION_RETRIES_MAX:
                raise
            continue
        if status is not None:
            POSTINGS.labels(status).inc()
            if result.get("lock_wait_s"):
                SYNC_LOCK_WAIT_SECONDS.observe(result["lock_wait_s"])
            if ctx.settings.posting_mode != "sync":
                await ctx.nudger.nudge(tenant_id, sorted({e["ledger_account_id"] for e in current["ledger_entries"]}))
        return await get_transaction(ctx, tenant_id, txn_id)
    raise AssertionError("unreachable")


async def list_versions(ctx: CellContext, tenant_id: str, txn_id: uuid.UUID) -> list[dict]:
    rows = await ctx.run(lambda conn: conn.fetch(Q["fetch_versions"], tenant_id, txn_id))
    if not rows:
        raise NotFound(f"ledger transaction {txn_id} not found")
    return [{**r["snapshot"], "id": str(uuid.uuid5(r["transaction_id"], str(r["version"]))),
             "object": "ledger_transaction_version", "ledger_transaction_id": str(r["transaction_id"]),
             "version": r["version"], "hash": r["hash"].hex(), "created_at": render.iso(r["created_at"])}
            for r in rows]


async def list_transactions(ctx: CellContext, tenant_id: str, *, after_seq: int, per_page: int, **filters) -> Page:
    async def work(conn: asyncpg.Connection):
        rows = await listing.list_transactions(conn, tenant_id, after_seq=after_seq, limit=per_page + 1, **filters)
        more = len(rows) > per_page
        rows = rows[:per_page]
        entries = await conn.fetch(Q["fetch_transaction_entries"], [r["id"] for r in rows]) if rows else []
        by_txn: dict = {}
        for e in entries:
            by_txn.setdefault(e["transaction_id"], []).append(render.entry(e, False))
        return Page([render.transaction(r, by_txn.get(r["id"], [])) for r in rows],
                    encode_cursor(rows[-1]["seq"]) if more else None)

    return await ctx.run(work)
