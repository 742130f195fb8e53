"""Use cases of bulk requests: take one (pending), read them and their results, and process one as the workers
do: every resource through the cell's own create / update use cases, new transactions many to a database
transaction (store.post_many), each resource's result written in the same transaction as its effect, so a retried
or resumed request never makes anything twice; completed with a `bulk_request.completed` event."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from datetime import datetime, timezone

import asyncpg
import msgspec

from cell.ledger.commands import (
    AccountCreate,
    AccountUpdate,
    BulkRequestCreate,
    TransactionCreate,
    TransactionUpdate,
)
from cell.ledger.errors import (
    Conflict,
    DatabaseUnavailable,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    InvalidRequest,
    LedgerError,
    LockTimeout,
    NotFound,
    OutcomeUnknown,
    PostingRejected,
    RetryableConflict,
    TenantFrozen,
    TenantMoved,
)
from cell.ledger.models import IdemKey, Posting
from cell.service import accounts, events, transactions, views
from cell.service.common import Page, parse_uuid, seq_page
from cell.service.context import CellContext
from cell.service.ledgers import create_idempotently
from cell.store import bulk as store
from cell.store import events as store_events
from cell.store import tenants as store_tenants
from cell.store import transactions as store_transactions
from cell.store.errors import translate

# Not the resource's fault: the request stops here and is resumed later (its lease runs out), never a bulk_error.
# (Nor is any error that is no LedgerError: both use an attempt, and a request past its attempts is given up.)
TRANSIENT = (DatabaseUnavailable, OutcomeUnknown, TenantFrozen, TenantMoved, LockTimeout, RetryableConflict,
             IdempotencyInFlight)
_encoder = msgspec.json.Encoder()
_AT = re.compile(r" - at `\$\.?([^`]*)`$")


# ---- taking and reading -------------------------------------------------------------------------------------

async def create_request(ctx: CellContext, tenant_id: str, cmd: BulkRequestCreate,
                         idem: IdemKey | None) -> views.BulkRequest:
    if len(cmd.resources) > ctx.settings.bulk_resources_max:
        raise PostingRejected(f"a bulk request holds at most {ctx.settings.bulk_resources_max} resources",
                              "too_many_resources")

    async def insert(conn: asyncpg.Connection, new_id: uuid.UUID) -> views.BulkRequest:
        # The workers take requests oldest first: a tenant's backlog is bounded, so it delays the others' by so much.
        most = ctx.settings.bulk_requests_open_max
        if await store.lock_and_count_open(conn, tenant_id, most) >= most:
            raise PostingRejected(f"a tenant has at most {most} bulk requests open (pending or processing): create "
                                  "this one when one of them has completed", "too_many_open_bulk_requests")
        return views.bulk_request(await store.insert_request(
            conn, new_id, tenant_id, action_type=cmd.action_type, resource_type=cmd.resource_type,
            metadata=cmd.metadata, resources=cmd.resources))

    return await create_idempotently(ctx, tenant_id, idem, "bulk_request", views.BulkRequest, insert,
                                     lambda conn, rid: _request(conn, tenant_id, rid))


async def _request(conn: asyncpg.Connection, tenant_id: str, request_id) -> views.BulkRequest:
    row = await store.fetch_request(conn, tenant_id, request_id)
    if row is None:
        raise NotFound(f"bulk request {request_id} not found")
    return views.bulk_request(row)


async def get_request(ctx: CellContext, tenant_id: str, request_id: uuid.UUID) -> views.BulkRequest:
    return await ctx.run(lambda conn: _request(conn, tenant_id, request_id))


async def requests_page(ctx: CellContext, tenant_id: str, *, after_cursor: str | None, per_page: int,
                        **filters) -> Page[views.BulkRequest]:
    return await seq_page(ctx, tenant_id, "bulk_requests", after_cursor, per_page, views.bulk_request,
                          store.list_requests, **filters)


async def get_result(ctx: CellContext, tenant_id: str, result_id: uuid.UUID) -> views.BulkResult:
    row = await ctx.run(lambda conn: store.fetch_result(conn, tenant_id, result_id))
    if row is None:
        raise NotFound(f"bulk result {result_id} not found")
    return views.bulk_result(row)


async def results_page(ctx: CellContext, tenant_id: str, *, after_cursor: str | None, per_page: int,
                       **filters) -> Page[views.BulkResult]:
    return await seq_page(ctx, tenant_id, "bulk_results", after_cursor, per_page, views.bulk_result,
                          store.list_results, **filters)


# ---- processing (the workers) -------------------------------------------------------------------------------

def resource_idempotency(request_id: uuid.UUID, index: int, resource: dict) -> IdemKey:
    """Each resource's own Idempotency-Key: a create retried after a crash replays, never makes a second one."""
    return IdemKey(f"bulk:{request_id}:{index}", hashlib.sha256(_encoder.encode(resource)).digest())


def _decode(resource: dict, type_: type):
    """A resource decoded as strictly as the same body sent alone."""
    return msgspec.json.decode(_encoder.encode(resource), type=type_, strict=True)


def _request_errors(exc: Exception) -> list[dict]:
    if isinstance(exc, msgspec.ValidationError):
        message = str(exc)
        at = _AT.search(message)
        return [{"code": "invalid_request", "message": message, "parameter": at.group(1) if at else None}]
    if isinstance(exc, LedgerError):
        return [{"code": exc.code, "message": exc.detail, "parameter": None}]
    raise exc


def _failure(index: int, resource: dict, exc: Exception) -> tuple:
    now = datetime.now(timezone.utc)
    error = views.BulkError(id=uuid.uuid4(), object="bulk_error", live_mode=True, created_at=now, updated_at=now,
                            request_errors=[views.BulkRequestError(**e) for e in _request_errors(exc)])
    return index, "bulk_error", error.id, msgspec.to_builtins(error), "failed", resource


def _success(index: int, resource: dict, resource_type: str, entity) -> tuple:
    return index, resource_type, entity.id, msgspec.to_builtins(entity), "successful", resource


async def _write(ctx: CellContext, request, indexes: list[int], work) -> bool:
    """One database transaction that writes results: the tenant fenced, the request held under this worker's
    claim, the indexes already done left out; work(conn, todo) returns the result rows. False when nothing was
    left to do (or the claim is lost)."""
    tenant_id, request_id = request["tenant_id"], request["id"]

    async def run(conn: asyncpg.Connection) -> bool:
        async with conn.transaction():
            await store_tenants.fence(conn, tenant_id)
            if not await store.hold_request(conn, request_id, request["lease_token"]):
                return False
            done = await store.done_indexes(conn, request_id, indexes)
            todo = [i for i in indexes if i not in done]
            if not todo:
                return False
            await store.insert_results(conn, tenant_id, request_id, await work(conn, todo))
            return True

    return await ctx.run(run)


async def _one_at_a_time(ctx: CellContext, request, index: int, apply) -> None:
    """One new resource through its use case, then its result (the use case's idempotency, under the resource's
    key, makes a repeat after a crash a replay); a refusal is its bulk_error."""
    resource = request["resources"][index]
    try:
        entity = await apply(resource, index)
        row = _success(index, resource, request["resource_type"], entity)
    except TRANSIENT:
        raise
    except (LedgerError, msgspec.ValidationError) as exc:
        row = _failure(index, resource, exc)

    async def work(conn, todo):
        return [row]

    await _write(ctx, request, [index], work)


async def _create_transactions(ctx: CellContext, request, indexes: list[int]) -> list[Posting]:
    """A chunk of new transactions: checked one by one (a refusal is its bulk_error), written together in one
    database transaction with their results and their resource keys (a key claimed already, by this resource
    posted alone before a crash, is answered with what it made); if the database refuses one of them (a
    duplicate external_id), the chunk rolls back and each goes alone. Returns the postings written together."""
    tenant_id, request_id, resources = request["tenant_id"], request["id"], request["resources"]
    prepared: dict[int, tuple[Posting, views.LedgerTransaction, list | None]] = {}
    failures: dict[int, tuple] = {}
    for i in indexes:
        try:
            cmd = _decode(resources[i], TransactionCreate)
            prepared[i] = await transactions.prepare_create(
                ctx, tenant_id, cmd, resource_idempotency(request_id, i, resources[i]))
        except TRANSIENT:
            raise
        except (LedgerError, msgspec.ValidationError) as exc:
            failures[i] = _failure(i, resources[i], exc)
    written: list[Posting] = []

    async def work(conn: asyncpg.Connection, todo: list[int]) -> list[tuple]:
        claimed = await store.resources_of_keys(conn, tenant_id, [prepared[i][0].idempotency.key for i in todo
                                                                   if i in prepared])
        # A key claimed with another hash is another request's (a client may send bulk:<id>:<index> too): that
        # resource is refused as when it is posted alone, never answered with what the other request made.
        for i in todo:
            key = prepared[i][0].idempotency if i in prepared else None
            if key is not None and key.key in claimed and claimed[key.key][1] != key.request_hash:
                failures[i] = _failure(i, resources[i], IdempotencyKeyReused(
                    "this resource's Idempotency-Key was used with a different request"))
                del prepared[i]
        replayed = {k: resource for k, (resource, _) in claimed.items()}
        mine = [i for i in todo if i in prepared]
        fresh = [i for i in mine if prepared[i][0].idempotency.key not in replayed]
        postings = [prepared[i][0] for i in fresh]
        # The keys claimed in one statement; each posting then written as ledger_post writes it, without its own
        # claim. This transaction holds the request, but a worker that lost its claim may still be posting a
        # resource alone (the fallback below): a key it claimed meanwhile rolls the chunk back to go one by one,
        # where that resource replays what it made.
        if await store.claim_keys(conn, tenant_id, [(p.idempotency.key, p.idempotency.request_hash, p.state.id)
                                                    for p in postings]) < len(postings):
            raise Conflict("a resource's Idempotency-Key was claimed while its chunk was written", "bulk_key_claimed")
        await store_transactions.post_many(conn, [(msgspec.structs.replace(prepared[i][0], idempotency=None),
                                                   prepared[i][2]) for i in fresh])
        written[:] = postings
        unapplied = {i for i in fresh if not prepared[i][0].apply_accounts}
        read_back = [prepared[i][0].state.id for i in fresh if i not in unapplied]
        read_back += [replayed[prepared[i][0].idempotency.key] for i in mine if i not in fresh]
        rendered = await transactions.transactions_by_id(conn, tenant_id, read_back)
        now = await store.transaction_time(conn) if unapplied else None

        def entity(i: int):
            posting, unstamped, _ = prepared[i]
            if i in unapplied:
                return transactions.posted_unapplied(unstamped, now)
            return rendered[replayed.get(posting.idempotency.key, posting.state.id)]

        return [_success(i, resources[i], "ledger_transaction", entity(i)) if i in prepared else failures[i]
                for i in todo]

    try:
        await _write(ctx, request, indexes, work)
    except TRANSIENT:
        raise
    except LedgerError:
        for i in indexes:
            await _one_at_a_time(ctx, request, i, _create_transaction_alone(ctx, request))
        return []
    return written


def _create_transaction_alone(ctx: CellContext, request):
    async def apply(resource: dict, index: int):
        return await transactions.create_transaction(ctx, request["tenant_id"], _decode(resource, TransactionCreate),
                                                     resource_idempotency(request["id"], index, resource))
    return apply


async def _nudge(ctx: CellContext, tenant_id: str, postings) -> None:
    if ctx.settings.posting_mode == "sync":
        return
    touched = sorted({str(e.ledger_account_id) for p in postings for e in p.state.ledger_entries})
    if touched:
        await ctx.nudger.nudge(tenant_id, touched)


def _with_id(resource: dict, what: str) -> tuple[uuid.UUID, dict]:
    rest = dict(resource)
    raw = rest.pop("id", None)
    if not isinstance(raw, str):
        raise InvalidRequest(f"an update names the {what} by its id", "id_required")
    return parse_uuid(raw, what), rest


def _create_use_case(ctx: CellContext, request):
    """How one new resource of this request is made alone (an account; a transaction whose chunk fell back)."""
    tenant_id, request_id = request["tenant_id"], request["id"]

    async def apply(resource: dict, index: int):
        if request["resource_type"] == "ledger_transaction":
            return await _create_transaction_alone(ctx, request)(resource, index)
        return await accounts.create_account(ctx, tenant_id, _decode(resource, AccountCreate),
                                             resource_idempotency(request_id, index, resource))

    return apply


def _update_use_case(ctx: CellContext, request, resource: dict):
    """An update resource read as its PATCH is (a refusal raised here is its bulk_error): its PATCH's own use case, to
    run on the connection and inside the database transaction of the caller, returning the entity as GET renders it
    and what a transaction's `after_update` needs after the commit (None for an account)."""
    tenant_id = request["tenant_id"]
    if request["resource_type"] == "ledger_account":
        account_id, rest = _with_id(resource, "ledger account")
        account_cmd = _decode(rest, AccountUpdate)

        async def apply_account(conn: asyncpg.Connection):
            return await accounts.apply_update(ctx, conn, tenant_id, account_id, account_cmd), None

        return apply_account
    txn_id, rest = _with_id(resource, "ledger transaction")
    cmd = _decode(rest, TransactionUpdate)

    async def apply_transaction(conn: asyncpg.Connection):
        updated = await transactions.apply_update(ctx, conn, tenant_id, txn_id, cmd)
        return (await transactions.transactions_by_id(conn, tenant_id, [txn_id]))[txn_id], updated

    return apply_transaction


async def _update(ctx: CellContext, request, index: int) -> None:
    """One update resource through its PATCH's use case, in the database transaction that writes its result under
    this worker's claim (_write): a failure between the two leaves neither (the resumed request applies it then,
    once; a given-up request reports it not applied truly), and a worker that lost its claim applies nothing. A
    refusal is its bulk_error (the update rolled back to a savepoint, its result written)."""
    resource = request["resources"][index]
    refused = apply = None
    try:
        apply = _update_use_case(ctx, request, resource)
    except (LedgerError, msgspec.ValidationError) as exc:
        refused = _failure(index, resource, exc)
    done: list = []

    async def work(conn: asyncpg.Connection, todo: list[int]) -> list[tuple]:
        done.clear()  # (run again after a conflict)
        if apply is None:
            return [refused]
        try:
            async with conn.transaction():
                entity, updated = await apply(conn)
        except TRANSIENT:
            raise
        except LedgerError as exc:
            return [_failure(index, resource, exc)]
        except asyncpg.PostgresError as exc:  # a refusal the database raised; anything else is ctx.run's
            refusal = translate(exc)
            if refusal is None or isinstance(refusal, TRANSIENT):
                raise
            return [_failure(index, resource, refusal)]
        done.append(updated)
        return [_success(index, resource, request["resource_type"], entity)]

    if await _write(ctx, request, [index], work) and done and done[0] is not None:
        await transactions.after_update(ctx, request["tenant_id"], done[0])


async def process(ctx: CellContext, request, *, chunk_size: int, chunks_at_once: int, lease_s: float,
                  pause_between_chunks_s: float = 0.0) -> views.BulkRequest | None:
    """Process a claimed request to its end: the resources without a result, in chunks (new transactions
    `chunks_at_once` at a time, the lease renewed after each such wave; any other kind one by one, the lease renewed
    before each); then complete it (with its event).
    Returns the completed request, or None when the claim was lost or another worker completed it."""
    done = await ctx.run(lambda conn: store.done_indexes(conn, request["id"]))
    todo = [i for i in range(request["total_resource_count"]) if i not in done]
    chunks = [todo[start:start + chunk_size] for start in range(0, len(todo), chunk_size)]
    chunked = (request["action_type"], request["resource_type"]) == ("create", "ledger_transaction")
    updates = request["action_type"] == "update"
    create = _create_use_case(ctx, request)

    async def claimed() -> bool:
        return await ctx.run(lambda conn: store.renew_lease(conn, request["id"], request["lease_token"], lease_s))

    async def one_chunk(chunk: list[int]) -> list[Posting] | None:
        if chunked:
            return await _create_transactions(ctx, request, chunk)
        for i in chunk:
            # The lease renewed before each (one may wait long for its locks); an update commits with its result
            # under the claim's hold (_update), so one that stalled past its lease applies nothing after it.
            if not await claimed():
                return None
            if updates:
                await _update(ctx, request, i)
            else:
                await _one_at_a_time(ctx, request, i, create)
        return []

    # Updates go one by one, in the request's order (two of one entity apply as listed); new transactions are
    # independent of each other, so their chunks may be written in parallel.
    at_once = chunks_at_once if chunked else 1
    for start in range(0, len(chunks), at_once):
        written = await asyncio.gather(*(one_chunk(c) for c in chunks[start:start + at_once]))
        await _nudge(ctx, request["tenant_id"], [p for postings in written if postings for p in postings])
        if None in written or not await claimed():
            return None
        if pause_between_chunks_s:
            await asyncio.sleep(pause_between_chunks_s)
    return await ctx.run(lambda conn: _complete(conn, request))


ATTEMPTS_EXHAUSTED = "bulk_attempts_exhausted"


def attempts_exhausted(request, attempts_max: int) -> bool:
    """Claimed more times than attempts_max (every claim counts, a crashed worker's too): given up, not processed."""
    return request["attempts"] > attempts_max


async def give_up(ctx: CellContext, request, attempts_max: int) -> views.BulkRequest | None:
    """End a request whose processing failed at each of its attempts, in one database transaction under this claim:
    every resource without a result gets one (a new transaction or account that its resource key shows was made, by
    a resource posted alone whose result was lost, that entity; every other one a bulk_error
    `bulk_attempts_exhausted`: not applied (an update commits with its result, so one without a result was not
    applied), and never applied after this: a new one's key is taken, so a worker that stalled mid-attempt and posts
    it alone later is refused; an update commits only under a claim, which this completion ends), then it completes
    with its event.
    None when the claim is lost (another worker took it over or completed it)."""
    tenant_id, request_id, resources = request["tenant_id"], request["id"], request["resources"]
    exhausted = LedgerError(f"processing this bulk request failed at each of its {attempts_max} attempts; this "
                            "resource was not applied: send it again", ATTEMPTS_EXHAUSTED)

    async def run(conn: asyncpg.Connection) -> views.BulkRequest | None:
        async with conn.transaction():
            await store_tenants.fence(conn, tenant_id)
            if not await store.hold_request(conn, request_id, request["lease_token"]):
                return None
            done = await store.done_indexes(conn, request_id)
            todo = [i for i in range(request["total_resource_count"]) if i not in done]
            if request["action_type"] == "create":  # first: a resource posted alone in flight is waited for, and found
                await store.take_keys(conn, tenant_id, request_id,
                                      [resource_idempotency(request_id, i, resources[i]).key for i in todo])
            made = await _made_by_their_keys(conn, request, todo)
            await store.insert_results(conn, tenant_id, request_id, [
                _success(i, resources[i], request["resource_type"], made[i]) if i in made
                else _failure(i, resources[i], exhausted) for i in todo])
            return await _complete(conn, request)

    return await ctx.run(run)


async def _made_by_their_keys(conn: asyncpg.Connection, request, indexes: list[int]) -> dict[int, object]:
    """The entities that new resources among `indexes` made, as their resource keys (claimed with their own request
    hash) name them: posted alone, their results lost with the worker."""
    if request["action_type"] != "create" or not indexes:
        return {}
    tenant_id, request_id, resources = request["tenant_id"], request["id"], request["resources"]
    keys = {i: resource_idempotency(request_id, i, resources[i]) for i in indexes}
    claimed = await store.resources_of_keys(conn, tenant_id, [k.key for k in keys.values()])
    ours = {i: claimed[k.key][0] for i, k in keys.items() if k.key in claimed and claimed[k.key][1] == k.request_hash}
    if request["resource_type"] == "ledger_transaction":
        rendered = await transactions.transactions_by_id(conn, tenant_id, list(ours.values()))
        return {i: rendered[rid] for i, rid in ours.items() if rid in rendered}
    found = {i: await accounts.account_by_id(conn, tenant_id, rid) for i, rid in ours.items()}
    return {i: account for i, account in found.items() if account is not None}


async def _complete(conn: asyncpg.Connection, request) -> views.BulkRequest | None:
    async with conn.transaction():
        await store_tenants.fence(conn, request["tenant_id"])
        row = await store.complete(conn, request["id"])
        if row is None:
            return None
        view = views.bulk_request(row)
        await store_events.insert(conn, request["tenant_id"], [  # the outbox (0040), whether events are on or not
            events.Draft("bulk_request", "bulk_request.completed", row["id"], view)])
    return view
