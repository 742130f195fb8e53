"""The posting tables' value rules (their CHECK constraints, 0130), an idempotency key's claim and a posting's kept
key (0140), and events written in one statement (ledger_events, ledger_event): what the routines leave in the rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from routine_helpers import new_account, new_ledger, raised

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)


async def transaction_row(db, ledger_id, tenant, *, status="posted", ledgerable_type=None) -> uuid.UUID | Exception:
    txn = uuid.uuid4()
    error = await raised(db, "INSERT INTO ledger_transactions (id, tenant_id, ledger_id, status, effective_at,"
                             " ledgerable_type) VALUES ($1, $2, $3, $4, $5, $6)",
                         txn, tenant, ledger_id, status, AT, ledgerable_type)
    return error or txn


async def test_a_transaction_takes_only_a_known_status_and_ledgerable_type(db):
    tenant, ledger = await new_ledger(db)
    for status in ("pending", "posted", "archived"):
        assert isinstance(await transaction_row(db, ledger, tenant, status=status), uuid.UUID)
    for kind in (None, "expected_payment", "incoming_payment_detail", "payment_order", "return", "reversal"):
        assert isinstance(await transaction_row(db, ledger, tenant, ledgerable_type=kind), uuid.UUID)
    assert isinstance(await transaction_row(db, ledger, tenant, status="void"), asyncpg.CheckViolationError)
    assert isinstance(await transaction_row(db, ledger, tenant, status="Posted"), asyncpg.CheckViolationError)
    assert isinstance(await transaction_row(db, ledger, tenant, ledgerable_type="invoice"),
                      asyncpg.CheckViolationError)


@pytest.mark.parametrize(("direction", "amount", "ok"), [("debit", 1, True), ("credit", 1, True),
                                                         ("sideways", 1, False), ("debit", 0, False)])
async def test_an_entry_takes_only_debit_or_credit_and_a_positive_amount(db, direction, amount, ok):
    tenant, ledger = await new_ledger(db)
    error = await raised(db, "INSERT INTO ledger_entries (id, tenant_id, transaction_id, ledger_account_id, direction,"
                             " amount, effective_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                         uuid.uuid4(), tenant, uuid.uuid4(), uuid.uuid4(), direction, amount, AT)
    assert (error is None) if ok else isinstance(error, asyncpg.CheckViolationError)


@pytest.mark.parametrize(("kind", "ok"), [("entry", True), ("post", True), ("archive", True), ("void", False)])
async def test_a_balance_effect_has_a_known_kind(db, kind, ok):
    tenant, _ = await new_ledger(db)
    error = await raised(db, "INSERT INTO balance_effects (tenant_id, account_id, entry_id, kind, d_pending_debits,"
                             " d_pending_credits, d_posted_debits, d_posted_credits, effective_at)"
                             " VALUES ($1, $2, $3, $4, 0, 0, 0, 0, $5)",
                         tenant, uuid.uuid4(), uuid.uuid4(), kind, AT)
    assert (error is None) if ok else isinstance(error, asyncpg.CheckViolationError)


async def test_a_key_is_claimed_once_and_then_reports_used_with_its_first_request(db):
    tenant, _ = await new_ledger(db)
    first, second = uuid.uuid4(), uuid.uuid4()
    claim = "SELECT ledger_claim_key($1, 'k1', $2, 'ledger_transaction', $3)"
    assert await db.fetchval(claim, tenant, b"first", first) is False
    assert await db.fetchval(claim, tenant, b"second", second) is True
    row = await db.fetchrow("SELECT request_hash, resource_id FROM idempotency_keys WHERE tenant_id = $1 AND key = 'k1'",
                            tenant)
    assert (bytes(row["request_hash"]), row["resource_id"]) == (b"first", first)
    other, _ = await new_ledger(db)
    assert await db.fetchval(claim, other, b"other", uuid.uuid4()) is False  # keys are per tenant


async def test_a_calls_events_are_written_in_order_with_its_time_and_facts(db):
    tenant, _ = await new_ledger(db)
    entities = [uuid.uuid4() for _ in range(3)]
    events = [{"resource": "ledger_transaction", "event_name": f"ledger_transaction.e{i}", "entity_id": str(e),
               "data": {"n": i}} for i, e in enumerate(entities)]
    await db.execute("SELECT ledger_events($1, $2, $3, $4)", tenant, events, AT, {"lock_wait_s": 0})
    await db.execute("SELECT ledger_event($1, 'ledger_account', 'ledger_account.created', $2, $3, $4)",
                     tenant, entities[0], {"one": True}, AT)
    await db.execute("SELECT ledger_events($1, NULL, $2, NULL)", tenant, AT)  # events off: nothing
    rows = await db.fetch("SELECT resource, event_name, entity_id, data, event_time, facts, position FROM events"
                          " WHERE tenant_id = $1 ORDER BY seq", tenant)
    assert [(r["resource"], r["event_name"], r["entity_id"], r["data"]) for r in rows] == [
        *(("ledger_transaction", f"ledger_transaction.e{i}", e, {"n": i}) for i, e in enumerate(entities)),
        ("ledger_account", "ledger_account.created", entities[0], {"one": True})]
    assert {r["event_time"] for r in rows} == {AT}
    assert [r["facts"] for r in rows] == [{"lock_wait_s": 0}] * 3 + [None]
    assert {r["position"] for r in rows} == {None}  # the sequencer numbers them later


async def test_a_posting_keeps_its_key_with_the_answer_and_the_calls_facts_and_a_used_key_writes_nothing(db):
    """ledger_post with an Idempotency-Key (0140): the key's row, written once at the end of the call, holds the
    answer the service rendered (p_answer) and the call's own answer (facts); the key used again answers replay."""
    tenant, ledger = await new_ledger(db)
    cash, wallet = (await new_account(db, "debit", tenant=tenant, ledger=ledger),
                    await new_account(db, "credit", tenant=tenant, ledger=ledger))
    post = ("SELECT ledger_post($1, $2, $3, $4, $5, 'd', 'posted', $6, NULL, '{}', NULL, $7, $8,"
            " ARRAY['debit', 'credit'], ARRAY[5, 5]::bigint[], $9, '[]', '{}', p_answer => $10)::text")

    async def call(key: str, txn: uuid.UUID, answer: bytes | None) -> str:
        return await db.fetchval(post, tenant, key, b"hash", txn, ledger, AT, [uuid.uuid4(), uuid.uuid4()],
                                 [cash.id, wallet.id], [cash.id], answer)

    first = uuid.uuid4()
    facts = await call("kept", first, b'{"view": "rendered"}')
    row = await db.fetchrow("SELECT request_hash, resource_type, resource_id, status_code, response, facts::text"
                            " FROM idempotency_keys WHERE tenant_id = $1 AND key = 'kept'", tenant)
    assert tuple(row) == (b"hash", "ledger_transaction", first, 201, b'{"view": "rendered"}', facts)
    assert '"entries": [{' in facts  # cash applied now: its result is part of what a replay finishes
    again = uuid.uuid4()
    assert await call("kept", again, b"other") == '{"replay": true}'
    assert await db.fetchval("SELECT count(*) FROM ledger_transactions WHERE id = $1", again) == 0
    # No answer to keep: a replay renders the transaction anew. The key is still final (a status: no answer is to
    # come, so a tenant move's final catch-up need not look for it among the keys awaiting theirs).
    await call("bare", uuid.uuid4(), None)
    assert tuple(await db.fetchrow("SELECT status_code, response, facts FROM idempotency_keys"
                                   " WHERE tenant_id = $1 AND key = 'bare'", tenant)) == (201, None, None)
