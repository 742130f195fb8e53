"""Tenant moves between cells (DESIGN.md section 7): a plan, and a persisted, resumable state machine.

The move's row in the control plane (`moves`) holds its step and, in `watermarks`, everything a resumed mover
needs: the catch-up horizon, each table's keyset cursor, the time the freeze began, step durations, rows.
Every step is idempotent: a mover killed anywhere is resumed by `ledgerctl moves resume` and ends the same.

Steps: copy -> catch_up -> pre_verify -> catch_up -> freeze -> final_catch_up -> verify -> flip -> source_moved_out
-> unfreeze -> post_verify -> done.

Copying. The tables and columns are discovered in the cell's catalog at run time; TENANT_TABLES below is the
one list of what a tenant owns, and a cell table the mover does not know makes a move refuse to start.
Rows are copied with COPY (binary) in bounded keyset batches and upserted on the target on a natural key
(identity columns such as `seq` are not copied: the target numbers rows itself, in the source's order).
What changed after a round read it is found by transaction id, not by insertion order: every row version
written since the round began has an `xmin` at or after the round's snapshot xmin, so the next round copies
exactly the rows whose xmin is not older than that horizon (new rows and updated ones: balance caches,
statuses, applied flags, idempotency answers). Insert-only tables (ledger_forbid_change) upsert DO NOTHING. A
deleted row leaves no row version to find: the tables whose rows a tenant deletes (webhook endpoints: DELETABLE, its
configuration) are compared by key after each round copies them, and the target's rows gone from the source deleted.

Verifying without a long freeze. The whole-tenant verification (counts, every account recomputed from entries,
the audit chain, the target's invariants) runs in `pre_verify`, before the freeze, while the tenant writes:
what differs there is remembered, not failed, since the source moved on since the last round. More catch-up
rounds follow (what was written during the pre-verification must not wait for the freeze), then the final
one: together they copy every row changed since the horizon of the round before the pre-verification (which
precedes it), and record what those rows touch (accounts, transactions). Inside the freeze, nothing scales with
the tenant's history: the final catch-up reads the tables that grow with it by index (BOUNDED: rows past the floors
read under the fence when the last round began, the rows updates reopened and those not final then), and `verify`
checks only the delta: row counts (the pre-verification's up to its floors plus the rows past them), the balances
of the accounts touched since (or off in the pre-verification) on the target (its last resulting balances plus
queued effects) against the source's caches (plus its queued effects), the touched transactions' entries against
their effects, their versions (equal on both sides, links and hashes verifying on the target), the ledgers' sums. A
pre-verification problem of the target about something touched since is such a delta (the target, copied table
by table while the source writes, is rarely consistent before the freeze); one about nothing touched is real and
fails the move (the categories' closures and balances are rechecked whole when one was off: bounded by the
category graph, not the history). After the unfreeze, `post_verify` checks the target's invariants whole on the
live target.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Callable

import asyncpg

from cell.store import audit
from cell.store import events as cell_events
from cell.store import tenants as cell_tenants
from cell.store.errors import server_fault, session_lost
from cell.store.queries import Q as cell_queries
from cell.store.verify import audit_chain_head, category_problems, verify as verify_cell
from control_plane import catalog
from control_plane.catalog import Q
from control_plane.errors import EXIT_UNAVAILABLE, EXIT_VIOLATIONS, LedgerctlError
from control_plane.operations import finish_tenant, publish_route
from control_plane.settings import ControlPlaneSettings

# What a tenant owns in a cell, in copy order (parents first; a purge deletes in the reverse order), and how
# its rows are found: None means by the table's tenant_id column; otherwise a condition on `r` with $1 the
# tenant. A new table with a tenant_id column must be added here, or moves refuse to start.
TENANT_TABLES: dict[str, str | None] = {
    "tenants": "r.id = $1",
    "api_keys": None,
    "ledgers": None,
    "ledger_accounts": None,
    "account_balances": None,
    "ledger_account_balance_monitors": None,
    "ledger_transactions": None,
    "ledger_transaction_versions": None,
    "ledger_entries": None,
    "ledger_entry_metadata": None,
    "balance_effects": None,
    "effective_balance_buckets": "r.account_id IN (SELECT b.account_id FROM account_balances b "
                                 "WHERE b.tenant_id = $1)",
    "idempotency_keys": None,
    "events": None,
    "audit_links": None,
    "ledger_account_statements": None,
    "ledger_account_settlements": None,
    "ledger_account_settlement_entries": None,
    "ledger_account_categories": None,
    "ledger_account_category_members": None,
    "ledger_account_category_edges": None,
    "ledger_account_category_closure": None,
    "webhook_endpoints": None,
    "webhook_deliveries": None,
    "bulk_requests": None,
    "bulk_results": None,
}
# Cell tables that hold nobody's rows.
CELL_TABLES = frozenset({"schema_migrations", "schema_routines", "schema_routines_generation", "audit_sealer",
                         "api_key_cache_ttl"})
# The tenant row arrives on the target 'arriving' (the cell serves it nothing: 421 to a caller, LG012 to a write; cell
# migration 0225), and its state is never copied over: the move sets it, to frozen just before the flip (the copy whole)
# and to active after. The target's freeze has no lease (frozen_until, the source's): it ends only when the move
# unfreezes it. Nor is the source's leaving_since (0226, Mover._leave).
# Copied covered rows are sealed already (their links come along): audit_txid 0 keeps the target's sealer
# off them (cell/store/migrations/0080_audit_chain.sql).
# An idempotency key's seq is the target's own (a plain column with a sequence default, not an identity). A copied
# row's changed_txid is older than any round (0151).
OVERRIDES = {"tenants": {"state": "'arriving'", "frozen_until": "NULL", "leaving_since": "NULL"},
             "ledger_transaction_versions": {"audit_txid": "'0'::xid8"},
             "ledger_accounts": {"audit_txid": "'0'::xid8"},
             "idempotency_keys": {"seq": "nextval(pg_get_serial_sequence('idempotency_keys', 'seq'))"},
             **{name: {"changed_txid": "'0'::xid8"} for name in ("ledger_entry_metadata", "ledger_account_settlements",
                                                                 "ledger_account_settlement_entries")}}

# The cell migrations a move needs on both its cells: a tenant row 'arriving' (OVERRIDES), its leaving_since
# (Mover._leave), the deliveries a tenant leaves pending held (ledger_webhook_hold_tenant, Mover.step_unfreeze) and
# those waiting behind an earlier one of their entity released as it ends (0229: the copy carries them held).
MOVE_MIGRATIONS = ("0225_tenant_arriving", "0226_tenant_leaving", "0228_webhook_deliveries_held",
                   "0229_webhook_deliveries_waiting")

# The tenant back to active on the source, its keys remembered again (a freeze given up, a move failed or aborted).
UNFREEZE_SOURCE = ("UPDATE tenants SET state = 'active', leaving_since = NULL "
                   "WHERE id = $1 AND state IN ('active', 'frozen')")

# What a purge of a moved-out tenant's source copy leaves behind.
PURGE_KEEPS = frozenset({"tenants", "api_keys"})

STEPS = ("copy", "catch_up", "pre_verify", "freeze", "final_catch_up", "verify", "flip", "source_moved_out",
         "unfreeze", "post_verify", "done")
ABORTABLE = frozenset({"planned", "copy", "catch_up", "pre_verify", "freeze", "final_catch_up", "verify", "flip"})

# What the rows of each table touch (kind, column), recorded by the catch-up rounds after the pre-verification.
TOUCHES: dict[str, list[tuple[str, str]]] = {
    "ledger_accounts": [("accounts", "id")],
    "account_balances": [("accounts", "account_id")],
    "ledger_transactions": [("transactions", "id")],
    "ledger_transaction_versions": [("transactions", "transaction_id")],
    "ledger_entries": [("accounts", "ledger_account_id"), ("transactions", "transaction_id")],
    "balance_effects": [("accounts", "account_id"), ("transactions", "transaction_id")],
    "effective_balance_buckets": [("accounts", "account_id")],
}

# The final catch-up, inside the freeze, reads these tables by index instead of whole: the rows past the table's
# floor ({past}) and the rows an update may have changed since, named by what points at them ({accounts},
# {transactions}, {unapplied_entries}: see reopened()) or by the state they were in when the last round began
# (OPEN: not yet final then, found through small partial indexes; a row in its final state never changes again),
# or by the id of the transaction that last wrote them ({horizon}: the round's; an account's audit_txid, which the
# audit chain's trigger sets at every change, 0080; the changed_txid of 0151, set the same way; each indexed).
# FLOORS: a seq drawn from the table's sequence at insert, whose last value, read under the exclusive fence when the
# last round began, is below every later row of the tenant (each with an index on (tenant_id, seq); rows with no
# seq, idempotency keys claimed before 0150, are older than any floor). ORDERED: a column copied as it is, given
# per tenant above every value given before and never changed once given (an event's position: the readers' cursor
# order, 0040; an audit link's seal_seq: the sealer's chain order, 0080): the floor is the tenant's largest value
# then. Counts in the freeze are the pre-verification's (rows up to its floor) plus the rows past it; the other
# tables are counted whole (ledger_entry_metadata and settlement entries among them: an index's count).
# Any other table (a new one too) is read and counted whole, by transaction id: correct, and cheap because it is
# bounded by the tenant's configuration, not its history (tenants, api_keys, ledgers, balance monitors, webhook
# endpoints, categories with their members, edges and closure: a graph).
FLOORS = ("ledger_accounts", "ledger_transactions", "ledger_transaction_versions", "ledger_entries", "balance_effects",
          "idempotency_keys", "ledger_account_statements", "ledger_account_settlements", "webhook_deliveries",
          "bulk_requests", "bulk_results")
ORDERED = {"events": "position", "audit_links": "seal_seq"}
# The rows past a floor, per table (an event without a position yet is past every floor).
PAST = {"events": "(r.position > {floor} OR r.position IS NULL)", "audit_links": "r.seal_seq > {floor}"}
# What is not final when a round begins (read then, under the fence): keys whose answer is still to be stored (none
# of this API's: a key keeps its first answer in the transaction that claims it, cell/service/ledgers.py; an older
# API's during an upgrade, stored after its commit), deliveries pending (their claims and attempts are no writes
# of the tenant's requests, but take its fence, ledger_tenant_open: none lands on the source after the freeze; a
# redelivery makes a delivery pending again: pending at the final catch-up too), bulk requests not completed.
OPEN = {
    "unanswered_keys": "SELECT key FROM idempotency_keys WHERE tenant_id = $1 AND status_code IS NULL",
    "pending_deliveries": "SELECT id::text FROM webhook_deliveries WHERE tenant_id = $1 AND status = 'pending'",
    "open_bulk_requests": "SELECT id::text FROM bulk_requests WHERE tenant_id = $1 AND status <> 'completed'",
}
BOUNDED: dict[str, str] = {
    "ledger_accounts": "r.audit_txid >= {horizon}",
    # A balance row changes with no effect too: its `monitored` flag, set by a monitor's create and cleared by its
    # delete. The rows of the accounts the tenant's monitors watch or watched (bounded by them: configuration) are read.
    "account_balances": "r.account_id = ANY({accounts}) OR r.account_id IN (SELECT m.ledger_account_id "
                        "FROM ledger_account_balance_monitors m WHERE m.tenant_id = $1)",
    "ledger_transactions": "{past} OR r.id = ANY({transactions})",
    "ledger_transaction_versions": "{past}",
    "ledger_entries": "{past}",
    "balance_effects": "{past} OR r.entry_id = ANY({unapplied_entries})",
    "effective_balance_buckets": "r.account_id = ANY({accounts})",
    "idempotency_keys": "{past} OR r.key = ANY({unanswered_keys})",
    "events": "{past}",
    "audit_links": "{past}",
    "ledger_account_statements": "{past}",
    "webhook_deliveries": "{past} OR r.id = ANY({pending_deliveries}) OR r.status = 'pending'",
    "bulk_requests": "{past} OR r.id = ANY({open_bulk_requests})",
    "bulk_results": "{past}",
    "ledger_entry_metadata": "r.changed_txid >= {horizon}",
    "ledger_account_settlements": "r.changed_txid >= {horizon}",
    "ledger_account_settlement_entries": "r.changed_txid >= {horizon}",
}
# Tables whose rows the tenant deletes (configuration, read whole: bounded by it, not by history): once a round has
# copied one, the target's rows no longer on the source are deleted (their children with them, ON DELETE CASCADE, as
# on the source). Every other table only grows or changes in place.
DELETABLE = frozenset({"webhook_endpoints"})
# Floored tables whose rows below a floor still go, with their parent (ON DELETE CASCADE from a DELETABLE table):
# counted below the floor per parent, and a parent gone since counts nothing on either side.
GROUPED = {"webhook_deliveries": ("endpoint_id", "webhook_endpoints")}
# The lists reopened() passes to BOUNDED, with their types.
_LISTS = {"accounts": "uuid[]", "transactions": "uuid[]", "unapplied_entries": "uuid[]", "unanswered_keys": "text[]",
          "pending_deliveries": "uuid[]", "open_bulk_requests": "uuid[]"}


def past(name: str, floor: int) -> str:
    """The condition on `r` of the rows of `name` past its floor."""
    return PAST.get(name, "r.seq > {floor}").format(floor=int(floor))


@dataclass
class Table:
    name: str
    columns: list[str]
    types: dict[str, str]
    identity: str | None
    key: list[str]
    insert_only: bool
    scope: str

    @property
    def order(self) -> list[str]:
        return [self.identity] if self.identity else self.key


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def discover(conn: asyncpg.Connection) -> dict[str, Table]:
    """The cell's tables as the mover sees them; refuses when one is unknown (it might hold a tenant's rows)."""
    rows = await conn.fetch("""
        SELECT c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type,
               a.attidentity <> '' AS identity
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname, a.attnum""")
    columns: dict[str, list[tuple[str, str, bool]]] = {}
    for r in rows:
        columns.setdefault(r["table"], []).append((r["column"], r["type"], r["identity"]))
    unknown = sorted(t for t in columns if t not in TENANT_TABLES and t not in CELL_TABLES)
    if unknown:
        owning = [t for t in unknown if any(c == "tenant_id" for c, _, _ in columns[t])]
        raise LedgerctlError("unknown_tables", "the cell has tables the mover does not know "
                             f"({', '.join(unknown)}{'; with a tenant_id: ' + ', '.join(owning) if owning else ''}): "
                             "add them to control_plane/moves.py TENANT_TABLES (or CELL_TABLES); nothing changed")
    missing = sorted(t for t in TENANT_TABLES if t not in columns)
    if missing:
        raise LedgerctlError("cell_not_migrated", f"the cell lacks tables {', '.join(missing)}: migrate it first")
    keys = await conn.fetch("""
        SELECT c.relname AS table, i.indisprimary AS primary,
               array_agg(a.attname ORDER BY k.ord) AS columns, bool_or(a.attidentity <> '') AS has_identity
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
        WHERE n.nspname = 'public' AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
        GROUP BY c.relname, i.indexrelid, i.indisprimary ORDER BY c.relname, i.indisprimary DESC, i.indexrelid""")
    insert_only = {r["table"] for r in await conn.fetch("""
        SELECT DISTINCT c.relname AS table FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_proc p ON p.oid = t.tgfoid WHERE p.proname = 'ledger_forbid_change' AND NOT t.tgisinternal""")}
    tables: dict[str, Table] = {}
    for name, scope in TENANT_TABLES.items():
        cols = columns[name]
        key = next((list(k["columns"]) for k in keys if k["table"] == name and not k["has_identity"]), None)
        if key is None:
            raise LedgerctlError("no_natural_key", f"table {name} has no unique key without an identity column")
        identities = [c for c, _, ident in cols if ident]
        if scope is None and not any(c == "tenant_id" for c, _, _ in cols):
            raise LedgerctlError("no_tenant_column", f"table {name} has no tenant_id: give it a scope in TENANT_TABLES")
        tables[name] = Table(name, [c for c, _, _ in cols], {c: t for c, t, _ in cols},
                             identities[0] if identities else None, key, name in insert_only,
                             scope or "r.tenant_id = $1")
    return tables


async def require_migrated(conn: asyncpg.Connection, cell_name: str) -> None:
    """Refuses a move from or to a cell without MOVE_MIGRATIONS, before it writes."""
    missing = await conn.fetchval("SELECT array_agg(m ORDER BY m) FROM unnest($1::text[]) m "
                                  "WHERE NOT EXISTS (SELECT 1 FROM schema_migrations WHERE name = m)",
                                  list(MOVE_MIGRATIONS))
    if missing:
        raise LedgerctlError("cell_not_migrated", f"cell {cell_name} lacks migration {', '.join(missing)}: migrate it "
                             "first (`python -m cell.store.migrate <its database URL>`); nothing changed")


def _same_schema(source: dict[str, Table], target: dict[str, Table]) -> list[str]:
    return [f"{name}: {source[name].types} != {target[name].types}" for name in source
            if source[name].types != target[name].types]


# ---- copying -----------------------------------------------------------------------------------------------

async def snapshot_xmin(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


async def seq_floors(conn: asyncpg.Connection, tables: dict[str, Table]) -> dict[str, int]:
    """The last value of each FLOORS table's seq sequence (0 before the first row): at least the largest seq of
    any committed row, and smaller than any seq drawn later. O(1), whatever the tables hold. A table without its
    seq yet (a cell not migrated) has no floor: it is read whole."""
    return {name: await conn.fetchval(
        "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence($1, 'seq')::regclass), 0)", name)
        for name in FLOORS if "seq" in tables[name].columns}


async def ordered_floors(conn: asyncpg.Connection, tenant_id: str) -> dict[str, int]:
    """The tenant's largest value of each ORDERED column (0 before the first): an index's last entry."""
    return {name: await conn.fetchval(f"SELECT coalesce(max({column}), 0) FROM {_q(name)} "
                                      f"WHERE tenant_id = $1 AND {column} IS NOT NULL", tenant_id)
            for name, column in ORDERED.items()}


async def fence_point(src: asyncpg.Connection, tables: dict[str, Table], tenant_id: str,
                      lock_timeout_s: float) -> dict:
    """The seq floors and a horizon, read under the exclusive form of the tenant's fence: no write of the tenant
    is in flight then, so every row of the tenant up to a floor is committed, and each row it writes later has a
    larger seq (its writers wait a moment: a few reads of sequences)."""
    async with src.transaction():
        await src.execute("SELECT set_config('lock_timeout', $1, true)", f"{int(lock_timeout_s * 1000)}ms")
        await src.execute("SELECT pg_advisory_xact_lock(hashtextextended('tenant:' || $1, 0))", tenant_id)
        floors = await seq_floors(src, tables) | await ordered_floors(src, tenant_id)
        xmin = await snapshot_xmin(src)
        # The tenant's queue at this point: an effect applied later was in it, or is past the floor.
        unapplied = [[str(r[0]), str(r[1])] for r in await src.fetch(
            "SELECT entry_id, account_id FROM balance_effects WHERE tenant_id = $1 AND applied_at IS NULL", tenant_id)]
        # The rows not final at this point: one changed later was among them, or is past the floor.
        opened = {name: [r[0] for r in await src.fetch(query, tenant_id)] for name, query in OPEN.items()}
    return {"floors": floors, "xmin": xmin, "unapplied": unapplied, "open": opened}


async def reopened(src: asyncpg.Connection, dst: asyncpg.Connection, tenant_id: str, floors: dict[str, int],
                   queued: list[list[str]], opened: dict[str, list[str]] | None = None) -> dict:
    """What an update since the fence point (`floors`, and the tenant's `queued` effects then) may have changed in
    the BOUNDED tables, found from the rows past the floors: the transactions a new version names (status,
    metadata, partial post) or a new transaction reverses or partially posts; the effects queued at the fence
    point or still unapplied on the target (applied since, maybe); the accounts of those, of every effect past
    the floor and every new account (their balance caches and effective-time buckets); and the rows not final at
    the fence point (`opened`, OPEN)."""
    transactions = await src.fetchval("""
        SELECT coalesce(array_agg(DISTINCT x), '{}') FROM (
            SELECT transaction_id AS x FROM ledger_transaction_versions WHERE tenant_id = $1 AND seq > $2
            UNION ALL
            SELECT unnest(ARRAY[reverses_id, partially_posts_id]) FROM ledger_transactions
            WHERE tenant_id = $1 AND seq > $3) s WHERE x IS NOT NULL""",
                                      tenant_id, floors["ledger_transaction_versions"], floors["ledger_transactions"])
    unapplied = await dst.fetch("SELECT entry_id, account_id FROM balance_effects "
                                "WHERE tenant_id = $1 AND applied_at IS NULL", tenant_id)
    accounts = set(await src.fetchval("""
        SELECT coalesce(array_agg(DISTINCT x), '{}') FROM (
            SELECT account_id AS x FROM balance_effects WHERE tenant_id = $1 AND seq > $2
            UNION ALL
            SELECT id FROM ledger_accounts WHERE tenant_id = $1 AND seq > $3) s""",
                                      tenant_id, floors["balance_effects"], floors["ledger_accounts"]))
    accounts |= {r["account_id"] for r in unapplied} | {uuid.UUID(a) for _, a in queued}
    return {"floors": floors, "transactions": list(transactions), "accounts": sorted(accounts),
            "unapplied_entries": sorted({r["entry_id"] for r in unapplied} | {uuid.UUID(e) for e, _ in queued}),
            **{name: (opened or {}).get(name) for name in OPEN}}  # None: not read then (an older mover's round)


def _select(t: Table, last: list | None, since: int | None, limit: int, delta: dict | None = None) -> tuple[str, list]:
    args: list = []
    where = [t.scope]
    bounded = delta is not None and t.name in BOUNDED
    if bounded and ("{past}" in BOUNDED[t.name] and t.name not in delta["floors"]
                    or "{horizon}" in BOUNDED[t.name] and (since is None or "changed_txid" in BOUNDED[t.name]
                                                           and "changed_txid" not in t.columns)
                    or any("{" + name + "}" in BOUNDED[t.name] and delta.get(name) is None for name in _LISTS)):
        bounded = False  # what bounds it was not kept when the round began (an older mover, an older cell): whole
    if bounded:
        names = {"past": past(t.name, delta["floors"].get(t.name, 0)),
                 "horizon": f"'{int(since or 0)}'::xid8"}
        for name, pg_type in _LISTS.items():
            if "{" + name + "}" in BOUNDED[t.name]:
                args.append(delta[name])
                names[name] = f"${len(args) + 1}::{pg_type}"
        where.append("(" + BOUNDED[t.name].format(**names) + ")")
    if last is not None:
        params = []
        for col, value in zip(t.order, last):
            args.append(str(value))
            params.append(f"${len(args) + 1}::text::{t.types[col]}")
        where.append(f"ROW({', '.join('r.' + _q(c) for c in t.order)}) > ROW({', '.join(params)})")
    if since is not None:
        # Row versions written by a transaction at or after the horizon: 32-bit xids compared by age, which is
        # exact within 2^31 transactions (frozen rows are the oldest of all).
        args.append(since % 4294967296)
        where.append(f"age(r.xmin) <= age((${len(args) + 1}::bigint)::text::xid)")
    cols = ", ".join("r." + _q(c) for c in t.columns)
    order = ", ".join("r." + _q(c) for c in t.order)
    return f"SELECT {cols} FROM {_q(t.name)} r WHERE {' AND '.join(where)} ORDER BY {order} LIMIT {int(limit)}", args


async def copy_batch(src: asyncpg.Connection, dst: asyncpg.Connection, tenant_id: str, t: Table,
                     last: list | None, since: int | None, limit: int,
                     track: bool = False, delta: dict | None = None) -> tuple[int, list | None, dict[str, list[str]]]:
    """One batch from source to target: (rows, the batch's last key or None when there were no rows, and with
    `track` the accounts and transactions the batch's rows point at); with `delta` (the final catch-up), a BOUNDED
    table is read by index (see there)."""
    query, args = _select(t, last, since, limit, delta)
    buffer = io.BytesIO()
    status = await src.copy_from_query(query, tenant_id, *args, output=buffer, format="binary")
    rows = int(status.split()[-1])
    if rows == 0:
        return 0, None, {}
    buffer.seek(0)
    temp = _q(f"move_{t.name}")
    overrides = OVERRIDES.get(t.name, {})
    insert_cols = [c for c in t.columns if c != t.identity]
    values = ", ".join(overrides.get(c, _q(c)) for c in insert_cols)
    update = [c for c in insert_cols if c not in t.key and c not in overrides]
    if t.insert_only or not update:
        conflict = "DO NOTHING"
    else:
        conflict = "DO UPDATE SET " + ", ".join(f"{_q(c)} = EXCLUDED.{_q(c)}" for c in update)
    # The tail of the batch (the next keyset cursor) and, with `track`, what its rows point at, in one query.
    pointers = [(kind, column) for kind, column in TOUCHES.get(t.name, []) if column in t.columns] if track else []
    aggregates = "".join(f", (SELECT array_agg(DISTINCT {_q(column)}::text) FROM {temp} WHERE {_q(column)} IS NOT "
                         "NULL)" for _, column in pointers)
    tail_query = (f"SELECT {', '.join(map(_q, t.order))}{aggregates} FROM {temp} "
                  f"ORDER BY {', '.join(_q(c) + ' DESC' for c in t.order)} LIMIT 1")
    insert = (f"INSERT INTO {_q(t.name)} ({', '.join(map(_q, insert_cols))}) SELECT {values} FROM {temp} "
              f"ORDER BY {', '.join(map(_q, t.order))} ON CONFLICT ({', '.join(map(_q, t.key))}) {conflict}")
    # The final catch-up runs in one transaction on the target (one commit): no savepoint per batch, the temp
    # table emptied by hand; otherwise each batch commits on its own and the temp table empties on commit.
    nested = dst.is_in_transaction()
    async with contextlib.nullcontext() if nested else dst.transaction():
        if t.name not in _TEMPS.setdefault(dst, set()):
            await dst.execute(f"CREATE TEMP TABLE IF NOT EXISTS {temp} (LIKE {_q(t.name)}) ON COMMIT DELETE ROWS")
            _TEMPS[dst].add(t.name)
        if nested:
            await dst.execute(f"TRUNCATE {temp}")
        await dst.copy_to_table(f"move_{t.name}", source=buffer, columns=t.columns, format="binary")
        await dst.execute(insert)
        found = await dst.fetchrow(tail_query)
    pointed: dict[str, list[str]] = {}
    for (kind, _), ids in zip(pointers, list(found.values())[len(t.order):]):
        pointed.setdefault(kind, []).extend(ids or [])
    return rows, [_jsonable(v) for v in list(found.values())[:len(t.order)]], pointed


async def delete_gone(src: asyncpg.Connection, dst: asyncpg.Connection, t: Table, tenant_id: str) -> int:
    """The target's rows of a DELETABLE table that the source no longer holds, deleted (children cascading): rows."""
    names = [f"k{i}" for i in range(len(t.key))]
    keys = await src.fetch(f"SELECT {', '.join(f'r.{_q(c)}::text' for c in t.key)} FROM {_q(t.name)} r "
                           f"WHERE {t.scope}", tenant_id)
    columns = [[r[i] for r in keys] for i in range(len(t.key))]
    same = " AND ".join(f"r.{_q(c)}::text = k.{n}" for c, n in zip(t.key, names))
    status = await dst.execute(
        f"DELETE FROM {_q(t.name)} r WHERE {t.scope} AND NOT EXISTS (SELECT 1 FROM unnest("
        f"{', '.join(f'${i + 2}::text[]' for i in range(len(t.key)))}) AS k({', '.join(names)}) WHERE {same})",
        tenant_id, *columns)
    return int(status.split()[-1])


# The temp tables each target connection has created (a connection's own: they go with it).
_TEMPS: weakref.WeakKeyDictionary[asyncpg.Connection, set[str]] = weakref.WeakKeyDictionary()


def _jsonable(value):
    return value if isinstance(value, (int, str)) else str(value)


async def count_rows(conn: asyncpg.Connection, tables: dict[str, Table], tenant_id: str,
                     floors: dict[str, int] | None = None) -> dict[str, int]:
    """Rows per table of the tenant; with `floors`, only the rows past the floor in those tables."""
    floors = floors or {}
    return {name: await conn.fetchval(f"SELECT count(*) FROM {_q(name)} r WHERE {t.scope}"
                                      + (f" AND {past(name, floors[name])}" if name in floors else ""), tenant_id)
            for name, t in tables.items()}


async def held_data(conn: asyncpg.Connection, tenant_id: str) -> list[str]:
    """The tables of TENANT_TABLES holding anything of the tenant's beside its own row and its revoked keys: what
    makes a tenant one that `tenants delete` never deletes. One indexed probe per table, not a count."""
    held = []
    for name, t in (await discover(conn)).items():
        if name == "tenants":
            continue
        live = " AND r.revoked_at IS NULL" if name == "api_keys" else ""
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {_q(name)} r WHERE {t.scope}{live})", tenant_id):
            held.append(name)
    return held


async def count_below(conn: asyncpg.Connection, tables: dict[str, Table], tenant_id: str,
                      floors: dict[str, int]) -> dict[str, int | dict[str, int]]:
    """Rows of the tenant up to the floor in each floored table: fixed once the floor is read (the fence), but for a
    GROUPED table's, counted per parent (a parent deleted later takes its rows along)."""
    counts: dict[str, int | dict[str, int]] = {}
    for name, floor in floors.items():
        where = f"FROM {_q(name)} r WHERE {tables[name].scope} AND NOT coalesce({past(name, floor)}, false)"
        if name in GROUPED:
            parent = _q(GROUPED[name][0])
            counts[name] = {str(r[0]): r[1] for r in await conn.fetch(
                f"SELECT r.{parent}, count(*) {where} GROUP BY r.{parent}", tenant_id)}
        else:
            counts[name] = await conn.fetchval(f"SELECT count(*) {where}", tenant_id)
    return counts


async def _below(conn: asyncpg.Connection, tables: dict[str, Table], tenant_id: str, name: str,
                 below: int | dict[str, int]) -> int:
    """A count_below of `name` now: a GROUPED table's per-parent counts summed over the parents still there."""
    if not isinstance(below, dict):
        return below
    parents = tables[GROUPED[name][1]]
    alive = {str(r[0]) for r in await conn.fetch(f"SELECT r.{_q(parents.key[0])} FROM {_q(parents.name)} r "
                                                 f"WHERE {parents.scope}", tenant_id)}
    return sum(n for parent, n in below.items() if parent in alive)


async def purge_tenant(conn: asyncpg.Connection, tables: dict[str, Table], tenant_id: str, batch_rows: int,
                       pause_s: float = 0.0, keep: frozenset[str] = frozenset()) -> dict[str, int]:
    """Delete a tenant's rows from one cell in batches, children first, but for the tables in `keep`. Only
    for a tenant that is not active there (the insert-only trigger enforces it for entries and versions;
    checked here for every table)."""
    deleted: dict[str, int] = {}
    for name in reversed(list(tables)):
        if name in keep:
            continue
        t = tables[name]
        deleted[name] = 0
        while True:
            async with conn.transaction():
                state = await conn.fetchval("SELECT state FROM tenants WHERE id = $1 FOR UPDATE", tenant_id)
                if state == "active":
                    raise LedgerctlError("tenant_active", f"tenant {tenant_id} is active in this cell: not purged")
                await conn.execute("SELECT set_config('ledger.purge_tenant', $1, true)", tenant_id)
                status = await conn.execute(
                    f"DELETE FROM {_q(name)} WHERE ctid = ANY(ARRAY(SELECT r.ctid FROM {_q(name)} r "
                    f"WHERE {t.scope} LIMIT {int(batch_rows)}))", tenant_id)
            n = int(status.split()[-1])
            deleted[name] += n
            if n < batch_rows:
                break
            if pause_s:
                await asyncio.sleep(pause_s)
    return deleted


# ---- verification ------------------------------------------------------------------------------------------

SOURCE_TOTALS = """
SELECT b.account_id, b.pending_debits + coalesce(q.pd, 0) AS pd, b.pending_credits + coalesce(q.pc, 0) AS pc,
       b.posted_debits + coalesce(q.od, 0) AS od, b.posted_credits + coalesce(q.oc, 0) AS oc
FROM account_balances b LEFT JOIN (
    SELECT account_id, sum(d_pending_debits) pd, sum(d_pending_credits) pc, sum(d_posted_debits) od,
           sum(d_posted_credits) oc
    FROM balance_effects WHERE tenant_id = $1 AND applied_at IS NULL
      AND ($2::uuid[] IS NULL OR account_id = ANY($2::uuid[])) GROUP BY account_id) q
    ON q.account_id = b.account_id
WHERE b.tenant_id = $1 AND ($2::uuid[] IS NULL OR b.account_id = ANY($2::uuid[]))"""

TARGET_FROM_ENTRIES = """
SELECT a.id AS account_id,
       coalesce(sum(e.amount) FILTER (WHERE e.direction = 'debit' AND s.status <> 'archived'), 0) AS pd,
       coalesce(sum(e.amount) FILTER (WHERE e.direction = 'credit' AND s.status <> 'archived'), 0) AS pc,
       coalesce(sum(e.amount) FILTER (WHERE e.direction = 'debit' AND s.status = 'posted'), 0) AS od,
       coalesce(sum(e.amount) FILTER (WHERE e.direction = 'credit' AND s.status = 'posted'), 0) AS oc
FROM ledger_accounts a
LEFT JOIN ledger_entries e ON e.ledger_account_id = a.id
LEFT JOIN ledger_transactions t ON t.id = e.transaction_id
LEFT JOIN LATERAL (SELECT ledger_entry_status(e.version, t.entries_version, t.status) AS status) s ON true
WHERE a.tenant_id = $1 AND ($2::uuid[] IS NULL OR a.id = ANY($2::uuid[])) GROUP BY a.id"""


async def compare_counts(src: asyncpg.Connection, dst: asyncpg.Connection, tables: dict[str, Table],
                         tenant_id: str, counted: dict | None = None) -> tuple[list[str], dict, dict]:
    """(a problem per table whose tenant row count differs, the source's counts, the target's counts). With
    `counted` (the pre-verification's floors and counts below them, each side's own), the floored tables are
    counted past their floors only."""
    if counted is None:
        source_counts, target_counts = await asyncio.gather(count_rows(src, tables, tenant_id),
                                                            count_rows(dst, tables, tenant_id))
    else:
        source_counts, target_counts = await asyncio.gather(
            count_rows(src, tables, tenant_id, counted["source_floors"]),
            count_rows(dst, tables, tenant_id, counted["target_floors"]))
        for name in counted["source_floors"]:
            source_counts[name] += await _below(src, tables, tenant_id, name, counted["source_below"][name])
            target_counts[name] += await _below(dst, tables, tenant_id, name, counted["target_below"][name])
    problems = [f"{name}: {source_counts[name]} rows on the source, {target_counts[name]} on the target"
                for name in tables if source_counts[name] != target_counts[name]]
    return problems, source_counts, target_counts


async def verify_copy(src: asyncpg.Connection, dst: asyncpg.Connection, tables: dict[str, Table],
                      tenant_id: str, floors: dict[str, int] | None = None) -> dict:
    """Row counts per table, every account's balances recomputed from entries on the target against the
    source's caches (plus its queued effects), the audit-chain head, and the target's own invariants. With the
    source's seq `floors` (read under the fence), also what the freeze's counts start from ("counted")."""
    problems, source_counts, target_counts = await compare_counts(src, dst, tables, tenant_id)
    counted = None
    if floors is not None:
        # The target is written by this mover only: its seq floors and counts are fixed while it verifies. An
        # ORDERED column is the source's on both sides: its floor is the last round's, up to which the target holds
        # every row (as final as on the source), whatever the copy's lag since.
        ordered = {n: floors[n] for n in ORDERED if n in floors}
        target_floors = await seq_floors(dst, tables) | ordered
        counted = {"source_floors": floors, "source_below": await count_below(src, tables, tenant_id, floors),
                   "target_floors": target_floors,
                   "target_below": {n: target_counts[n] for n in target_floors if n not in ordered}
                   | await count_below(dst, tables, tenant_id, ordered | {n: target_floors[n] for n in GROUPED
                                                                          if n in target_floors})}

    def totals(rows):
        return {r["account_id"]: (int(r["pd"]), int(r["pc"]), int(r["od"]), int(r["oc"])) for r in rows}

    source_balances = totals(await src.fetch(SOURCE_TOTALS, tenant_id, None))
    target_balances = totals(await dst.fetch(TARGET_FROM_ENTRIES, tenant_id, None))
    accounts_off = _balance_problems(source_balances, target_balances, problems)
    source_head = await audit_chain_head(src, tenant_id)
    target_head = await audit_chain_head(dst, tenant_id)
    if source_head != target_head:
        problems.append(f"audit-chain head differs: source {source_head}, target {target_head}")
    target_problems = await verify_cell(dst, tenant_id)
    problems += [f"target: {p}" for p in target_problems]
    return {"ok": not problems, "rows": source_counts, "accounts": len(source_balances),
            "audit_chain_head": source_head, "problems": problems, "accounts_off": sorted(accounts_off),
            "target_problems": target_problems, "rows_target": target_counts, "audit_chain_head_target": target_head,
            "counted": counted}


def _balance_problems(source: dict, target: dict, problems: list[str]) -> list[str]:
    off = []
    for account in sorted(set(source) | set(target), key=str):
        if source.get(account) != target.get(account):
            off.append(str(account))
            if len(problems) <= 50:
                problems.append(f"account {account}: source {source.get(account)} != target recomputed "
                                f"{target.get(account)}")
    return off


# The subjects a target problem from cell/store/verify.py names: "account X...", "transaction X...", "entry X".
_SUBJECT = re.compile(r"^(account|transaction|entry|ledger|category) ([0-9a-f-]{36})")

VERSIONS_OF = """
SELECT transaction_id, version, encode(prev_hash, 'hex') AS prev_hash, encode(hash, 'hex') AS hash,
       hash = ledger_version_hash(prev_hash, snapshot) AS hash_ok
FROM ledger_transaction_versions WHERE tenant_id = $1 AND transaction_id = ANY($2::uuid[])
ORDER BY transaction_id, version"""

# A touched account's balances on the target without reading its history: the resulting balances of its last
# applied effect (the running sums) plus its queued effects.
TARGET_FROM_CHAIN = """
SELECT a.id AS account_id, coalesce(l.pending_debits, 0) + coalesce(q.pd, 0) AS pd,
       coalesce(l.pending_credits, 0) + coalesce(q.pc, 0) AS pc, coalesce(l.posted_debits, 0) + coalesce(q.od, 0) AS od,
       coalesce(l.posted_credits, 0) + coalesce(q.oc, 0) AS oc
FROM ledger_accounts a
LEFT JOIN LATERAL (SELECT pending_debits, pending_credits, posted_debits, posted_credits FROM balance_effects f
                   WHERE f.account_id = a.id AND f.lock_version IS NOT NULL ORDER BY f.lock_version DESC LIMIT 1) l ON true
LEFT JOIN LATERAL (SELECT sum(d_pending_debits) pd, sum(d_pending_credits) pc, sum(d_posted_debits) od,
                          sum(d_posted_credits) oc
                   FROM balance_effects f WHERE f.account_id = a.id AND f.applied_at IS NULL) q ON true
WHERE a.tenant_id = $1 AND a.id = ANY($2::uuid[])"""

# The entries of the touched transactions whose effects (creation, post, archive) do not add up to what the
# entry and its transaction's status count for (nothing at all for a transaction archived on a lock failure).
ENTRY_EFFECTS_OF = """
SELECT e.id, e.transaction_id FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
CROSS JOIN LATERAL (SELECT ledger_entry_status(e.version, t.entries_version, t.status) AS status) s
LEFT JOIN balance_effects f ON f.entry_id = e.id
WHERE e.tenant_id = $1 AND e.transaction_id = ANY($2::uuid[])
GROUP BY e.id, e.transaction_id, e.direction, e.amount, s.status, t.archived_reason
HAVING CASE WHEN t.archived_reason = 'balance_lock_failure' THEN count(f.*) <> 0 ELSE
    coalesce(sum(f.d_pending_debits), 0) <> CASE WHEN e.direction = 'debit' AND s.status <> 'archived' THEN e.amount ELSE 0 END
 OR coalesce(sum(f.d_pending_credits), 0) <> CASE WHEN e.direction = 'credit' AND s.status <> 'archived' THEN e.amount ELSE 0 END
 OR coalesce(sum(f.d_posted_debits), 0) <> CASE WHEN e.direction = 'debit' AND s.status = 'posted' THEN e.amount ELSE 0 END
 OR coalesce(sum(f.d_posted_credits), 0) <> CASE WHEN e.direction = 'credit' AND s.status = 'posted' THEN e.amount ELSE 0 END
END"""

UNBALANCED_OF = """
SELECT e.transaction_id FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.ledger_account_id
WHERE e.tenant_id = $1 AND e.transaction_id = ANY($2::uuid[])
GROUP BY e.transaction_id, a.currency
HAVING sum(CASE WHEN e.direction = 'debit' THEN e.amount ELSE -e.amount END) <> 0"""


async def target_subjects(dst: asyncpg.Connection, target_problems: list[str]) -> tuple[list[list[str]], list[str]]:
    """The pre-verification's problems of the target, each as [kind, id, problem] about an account or a
    transaction (an entry's is its transaction's), and those about nothing the delta rechecks. The target is
    copied table by table while the source writes, so before the freeze it is rarely consistent; but a row found
    stale then changed on the source after its copy and is copied again: its account or transaction is touched
    in a later round, and checked then (balances, entries' effects, versions; the ledgers' sums in the freeze;
    the target's invariants whole after the unfreeze, post_verify). A problem about nothing touched is real."""
    matches = [(_SUBJECT.match(p), p) for p in target_problems]
    entries = {str(r[0]): str(r[1]) for r in await dst.fetch(
        "SELECT id, transaction_id FROM ledger_entries WHERE id = ANY($1::uuid[])",
        [m.group(2) for m, _ in matches if m and m.group(1) == "entry"])}
    subjects, standing = [], []
    for m, p in matches:
        if m is None:
            standing.append(f"target (before the freeze): {p}")
        elif m.group(1) in ("account", "transaction"):
            subjects.append([m.group(1) + "s", m.group(2), p])
        elif m.group(1) == "entry":
            subjects.append(["transactions", entries.get(m.group(2), ""), p])
    return subjects, standing


def resolve(unresolved: list[list[str]], touched: dict[str, list[str]]) -> list[list[str]]:
    """The pre-verification's target problems whose subject is still untouched."""
    return [u for u in unresolved if u[1] not in set(touched.get(u[0], []))]


def _merge(*subjects: dict[str, list[str]]) -> dict[str, list[str]]:
    return {kind: sorted({i for s in subjects for i in s.get(kind, [])}) for kind in ("accounts", "transactions")}


async def check_subjects(src: asyncpg.Connection, dst: asyncpg.Connection, tenant_id: str,
                         subjects: dict[str, list[str]]) -> tuple[list[str], dict[str, list[str]]]:
    """The delta check of touched accounts and transactions, bounded by their number, not by the tenant's history:
    (problems, the subjects that failed). An account (and each account of a touched transaction's entries): its
    balances on the target (last resulting balances plus queued effects) equal the source's caches plus queued
    effects, and the target's own caches. A transaction: its entries' effects add up, its versions are the
    source's with links and hashes verifying on the target, it balances. Run after each catch-up round past the
    pre-verification (outside the freeze: what fails is carried to the next), and in the freeze."""
    transactions = sorted(set(subjects.get("transactions", [])))
    accounts = set(subjects.get("accounts", []))
    if transactions:
        accounts |= {r[0] for r in await dst.fetch(
            "SELECT DISTINCT ledger_account_id::text FROM ledger_entries WHERE transaction_id = ANY($1::uuid[])",
            transactions)}
    account_list = sorted(accounts)

    def totals(rows):
        return {str(r["account_id"]): (int(r["pd"]), int(r["pc"]), int(r["od"]), int(r["oc"])) for r in rows}

    source_rows, (cache_rows, chain_rows) = await asyncio.gather(
        src.fetch(SOURCE_TOTALS, tenant_id, account_list), _fetch_in_turn(dst, [
            (SOURCE_TOTALS, tenant_id, account_list), (TARGET_FROM_CHAIN, tenant_id, account_list)]))
    source_balances, target_balances, caches = totals(source_rows), totals(chain_rows), totals(cache_rows)
    problems: list[str] = []
    failed: dict[str, set[str]] = {"accounts": set(_balance_problems(source_balances, target_balances, problems)),
                                   "transactions": set()}
    for account in account_list:
        if caches.get(account) != target_balances.get(account):
            failed["accounts"].add(account)
            problems.append(f"account {account}: the target's cache and queued effects {caches.get(account)} != "
                            f"its last resulting balances and queued effects {target_balances.get(account)}")
    source_versions, (target_versions, effects_off, unbalanced) = await asyncio.gather(
        src.fetch(VERSIONS_OF, tenant_id, transactions), _fetch_in_turn(dst, [
            (VERSIONS_OF, tenant_id, transactions), (ENTRY_EFFECTS_OF, tenant_id, transactions),
            (UNBALANCED_OF, tenant_id, transactions)]))
    for r in effects_off:
        failed["transactions"].add(str(r["transaction_id"]))
        problems.append(f"target: entry {r['id']}: its effects do not add up to its amount and status")

    def chains(rows):
        out: dict[str, list] = {}
        for r in rows:
            out.setdefault(str(r["transaction_id"]), []).append((r["version"], r["hash"]))
        return out

    source_chains, target_chains = chains(source_versions), chains(target_versions)
    for tx in transactions:
        if source_chains.get(tx) != target_chains.get(tx):
            failed["transactions"].add(tx)
            problems.append(f"transaction {tx}: its versions differ between source and target")
    previous = (None, None)
    for r in target_versions:
        expected = previous[1] if previous[0] == r["transaction_id"] else None
        if r["prev_hash"] != expected or not r["hash_ok"]:
            failed["transactions"].add(str(r["transaction_id"]))
            problems.append(f"target: transaction {r['transaction_id']} version {r['version']}: audit link or "
                            "hash does not verify")
        previous = (r["transaction_id"], r["hash"])
    for r in unbalanced:
        failed["transactions"].add(str(r["transaction_id"]))
        problems.append(f"target: transaction {r['transaction_id']} does not balance")
    return problems, {kind: sorted(ids) for kind, ids in failed.items()}


async def _fetch_in_turn(conn: asyncpg.Connection, queries: list[tuple]) -> list:
    return [await conn.fetch(*q) for q in queries]


async def verify_delta(src: asyncpg.Connection, dst: asyncpg.Connection, tables: dict[str, Table], tenant_id: str,
                       pre: dict, touched: dict[str, list[str]], unresolved: list[list[str]] | None = None,
                       versions_touched: bool | None = None) -> dict:
    """Inside the freeze, after the final catch-up: what changed since the pre-verification (module docstring).
    `touched`: the subjects to check (the final round's and those that failed before); `unresolved`: the
    pre-verification's target problems about subjects never touched since (by default: pre's, resolved by
    `touched`). Nothing here reads the tenant's history: the floored tables are counted past their floors."""
    problems, source_counts, _ = await compare_counts(src, dst, tables, tenant_id, pre.get("counted"))
    subject_problems, _ = await check_subjects(src, dst, tenant_id, _merge(touched, {"accounts": pre["accounts_off"]}))
    if unresolved is None:
        subjects, standing = await target_subjects(dst, pre["target_problems"])
        unresolved = resolve(subjects, touched)
        problems += standing
    else:
        problems += pre.get("standing", [])
    problems += [f"target (before the freeze, nothing touched since): {u[2]}" for u in unresolved]
    problems += subject_problems
    if any(m and m.group(1) == "category" for m in map(_SUBJECT.match, pre["target_problems"])):
        # a graph or closure copied mid-change: rechecked whole, bounded by the category graph, not the history
        problems += [f"target: {p}" for p in await category_problems(dst, tenant_id)]
    for r in await dst.fetch(cell_queries["verify_ledger_sums"], tenant_id):
        problems.append(f"target: ledger {r['ledger_id']} {r['currency']}: debits != credits")
    if versions_touched is None:
        versions_touched = bool(touched.get("transactions"))
    heads_equal = pre["audit_chain_head"] == pre["audit_chain_head_target"]
    if not heads_equal and not versions_touched:
        problems.append(f"audit-chain head differs (source {pre['audit_chain_head']}, target "
                        f"{pre['audit_chain_head_target']}) and no version was written since")
    head = pre["audit_chain_head"] if heads_equal and not versions_touched else \
        "the versions written since the pre-verification, equal"
    checked = _merge(touched, {"accounts": pre["accounts_off"]})
    return {"ok": not problems, "rows": source_counts, "accounts": pre["accounts"],
            "accounts_checked": len(checked["accounts"]), "transactions_checked": len(checked["transactions"]),
            "audit_chain_head": head, "problems": problems, "delta": True}


# ---- the state machine -------------------------------------------------------------------------------------

Progress = Callable[[dict], None]


# A round's progress is saved at most this often, not after every batch: the saved state holds what the round's
# batches touched (after the pre-verification), which grows with the round, and a save per batch made a large round
# quadratic: the mover fell further behind a busy tenant the larger its rounds grew.
SAVE_EVERY_S = 0.5
# A step that saves nothing for a while (a whole-tenant verification, a moved-out copy's purge, the drill's pause)
# still marks the move's row live this often (Mover._alive): `ledgerctl verify` takes a running move whose row is
# older than move_update_age_max_s for one whose mover died or hangs.
TOUCH_EVERY_S = 5.0
# Freezes given up (their final catch-up past move_freeze_s_limit) before a mover stops: move_not_converging.
FREEZES_GIVEN_UP_MAX = 3
# A catch-up round must copy at most this share of the round before it to be converging.
CONVERGING = 0.75
# A mover waits this long for the move's lock before it is refused move_busy: a mover killed a moment ago (SIGKILL)
# still holds it until PostgreSQL notices its closed connection and ends its session, so a resume run right after a
# crash would otherwise be refused. A mover that is truly alive holds it past the wait (it never lets it go).
MOVE_LOCK_WAIT_S_MAX = 5.0
MOVE_LOCK_POLL_S = 0.05


def catch_up_ends(rows: int, previous: int | None, rounds: int, s: ControlPlaneSettings) -> bool:
    """Whether the catch-up rounds stop (`rows` copied by the round just done, `previous` by the one before it in
    this catch-up): once a round is small enough; once a round no longer shrinks by a quarter (the tenant writes
    about as fast as a round copies: more rounds would each copy about as much again, the freeze's final round
    as much as after this one, and a starved mover could go on for minutes; seen at 6-13 rounds of ~1,500 rows
    hovering); or after move_catch_up_rounds_max rounds."""
    return (rows <= s.move_catch_up_rows_max or previous is not None and rows >= previous * CONVERGING
            or rounds > s.move_catch_up_rounds_max)


def fits_freeze(rows: int, s: ControlPlaneSettings) -> bool:
    """Whether the freeze may begin after a catch-up round that copied `rows`: the freeze's final round copies what
    the tenant wrote since that round began, about as much again, which must take at most move_freeze_s_max at
    move_rows_per_s_estimate. Otherwise the tenant writes faster than the rounds shrink and the rounds go on
    (Mover.step_catch_up): a freeze is never entered with more than that to copy."""
    return rows <= s.move_freeze_s_max * s.move_rows_per_s_estimate


@dataclass
class Mover:
    conn: asyncpg.Connection          # the control plane
    settings: ControlPlaneSettings
    move: dict
    progress: Progress = field(default=lambda event: None)

    def __post_init__(self) -> None:
        self.w: dict = dict(self.move["watermarks"] or {})
        self.w.setdefault("steps_ms", {})
        self.w.setdefault("copied", {})
        self.tenant_id: str = self.move["tenant_id"]
        self._waiting_since: float | None = None  # monotonic: since when catch-up rounds wait to fit the freeze
        self._touched_sets: tuple[dict, dict[str, set[str]]] | None = None  # w["touched"] and a set per kind beside

    def _touch(self, pointed: dict[str, list[str]]) -> None:
        """Add a batch's subjects to the round's touched ones (w["touched"]: lists, saved as JSON), each once, in time
        bounded by the batch, not by the round: a set per kind kept beside the lists, made again when w["touched"]
        is a new dict (a new round, a resumed mover)."""
        touched = self.w["touched"]
        if self._touched_sets is None or self._touched_sets[0] is not touched:
            self._touched_sets = (touched, {kind: set(ids) for kind, ids in touched.items()})
        sets = self._touched_sets[1]
        for kind, ids in pointed.items():
            seen = sets.setdefault(kind, set())
            new = [i for i in dict.fromkeys(ids) if i not in seen]
            seen.update(new)
            touched.setdefault(kind, []).extend(new)

    async def save(self, step: str) -> None:
        if await self.conn.fetchval(Q["save_move"], self.move["id"], step, self.w) is None:
            raise _Stopped()
        self.move["step"] = step

    def emit(self, **event) -> None:
        self.progress({"move": str(self.move["id"]), "tenant": self.tenant_id, **event})

    @contextlib.asynccontextmanager
    async def _alive(self):
        """Around work on the cells alone that saves nothing for a while: the move's row touched every TOUCH_EVERY_S
        meanwhile (the control-plane connection is idle then), so that a live mover is never taken for a dead one."""
        done = asyncio.Event()

        async def touch() -> None:
            while not done.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(done.wait(), TOUCH_EVERY_S)
                if not done.is_set():
                    await self.conn.fetchval(Q["touch_move"], self.move["id"])

        task = asyncio.create_task(touch())
        failed = True
        try:
            yield
            failed = False
        finally:
            done.set()
            if failed:  # the work's own error is the one to report
                with contextlib.suppress(Exception):
                    await task
            else:
                await task

    async def run(self) -> dict:
        source = await catalog.fetch_cell(self.conn, self.move["source_cell"])
        target = await catalog.fetch_cell(self.conn, self.move["target_cell"])
        self.src = await catalog.connect(source["database_url"], what=f"the database of cell {source['name']}")
        self.dst = await catalog.connect(target["database_url"], what=f"the database of cell {target['name']}")
        # Progress is saved without waiting for the control plane's WAL flush (a save lost in a crash only makes
        # the resumed mover redo idempotent work); the flip and the end commit synchronously.
        await self.conn.execute("SET synchronous_commit = off")
        try:
            self.tables = await discover(self.src)
            mismatch = _same_schema(self.tables, await discover(self.dst))
            if mismatch:
                raise LedgerctlError("schema_mismatch", "source and target cells differ: " + "; ".join(mismatch))
            await require_migrated(self.src, source["name"])
            await require_migrated(self.dst, target["name"])
            step = self.move["step"]
            if step == "planned":
                step = "copy"
            while step != "done":
                if step == self.settings.move_pause_before:
                    await self._pause(step)
                started = time.monotonic()
                self.emit(step=step, event="step")
                following = await getattr(self, f"step_{step}")()
                self.w["steps_ms"][step] = round(self.w["steps_ms"].get(step, 0) +
                                                 (time.monotonic() - started) * 1000, 1)
                await self.save(following)
                step = following
            await self.finish()
            result = report(self.move | {"watermarks": self.w, "state": "done"})
            if not self.w.get("post_verify", {"ok": True})["ok"]:
                raise LedgerctlError("move_post_verify_failed", f"move {self.move['id']} is done, but the target's "
                                     f"invariants do not hold for tenant {self.tenant_id}", EXIT_VIOLATIONS,
                                     details={**result, "violations": self.w["post_verify"]["problems"]})
            return result
        except _Stopped:
            fresh = await fetch_move(self.conn, self.move["id"])
            raise LedgerctlError("move_stopped", f"move {self.move['id']} is {fresh['state']}: the mover stopped",
                                 details=report(fresh)) from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            # A database restarted, failed over or ended the mover's session (a closed connection raises the driver's
            # InterfaceError at its next use, not a PostgresError): what each batch committed stands, the rest is
            # redone by a resumed mover, from the progress saved last.
            lost = [what for what, c in (("the control plane", self.conn), (f"cell {source['name']}", self.src),
                                         (f"cell {target['name']}", self.dst)) if c.is_closed()]
            if not (lost or session_lost(exc) or server_fault(exc)):
                raise  # anything else is a defect: loud
            move_id = self.move["id"]
            undo = f" (or `ledgerctl moves abort {move_id}`)" if self.move["step"] in ABORTABLE else ""
            raise LedgerctlError(
                "database_failed", f"move {move_id} stopped at step {self.move['step']}: the database of "
                f"{' and '.join(lost) or 'a cell or the control plane'} failed under it ({type(exc).__name__}: {exc}); "
                f"its progress is saved: run `ledgerctl moves resume {move_id}` once the database is back{undo}",
                EXIT_UNAVAILABLE, details=report(self.move | {"watermarks": self.w})) from exc
        finally:
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await self.conn.execute("RESET synchronous_commit")
            await self.src.close()
            await self.dst.close()

    async def _pause(self, step: str) -> None:
        """The fault drill (settings.move_pause_before): the mover waits here, its step saved, to be killed,
        resumed or aborted. A resumed mover does not pause again at the same step."""
        if self.w.get("paused_before") == step:
            return
        self.w["paused_before"] = step
        await self.save(step)
        self.emit(step=step, event="paused")
        while True:  # live, waiting: its row touched (an abort meanwhile stops it)
            if await self.conn.fetchval(Q["touch_move"], self.move["id"]) is None:
                raise _Stopped()
            await asyncio.sleep(0.5)

    # -- copying rounds --

    async def _round(self, step: str, since: int | None, delta: dict | None = None, final: bool = False) -> int:
        """One pass over every table: with `delta` (the rows past the last round's floors and those reopened),
        the BOUNDED tables by index, not whole. Resumable: each table's keyset cursor is saved, with what the
        batches before it touched, at most every SAVE_EVERY_S (a resumed mover copies again, idempotently, the
        batches after the last save) and by the caller at the round's end; but the final catch-up, in the freeze,
        saves once at its end and is redone whole if killed."""
        rnd = self.w.setdefault("round", {})
        if rnd.get("step") != step or rnd.get("since") != since:
            # A new round: its horizon (the snapshot xmin before its first read) and the seq floors the next
            # round is bounded by, read under the fence.
            rnd.clear()
            if step in ("copy", "catch_up"):
                point = await fence_point(self.src, self.tables, self.tenant_id,
                                          self.settings.move_freeze_lock_timeout_s)
                rnd.update({"next_since": point["xmin"], "floors": point["floors"], "queued": point["unapplied"],
                            "open": point["open"]})
            else:
                rnd["next_since"] = await snapshot_xmin(self.src)
            rnd.update({"step": step, "since": since, "cursors": {}, "rows": 0})
        s = self.settings
        started = saved = time.monotonic()
        for name, t in self.tables.items():
            cursor = rnd["cursors"].get(name, [])
            if cursor == "done":
                continue
            while True:
                if not final:  # the final catch-up checks once, before it begins
                    await self._check_running()
                track = "pre_verify" in self.w and "touched" in self.w
                n, last, pointed = await copy_batch(self.src, self.dst, self.tenant_id, t, cursor or None, since,
                                                    s.move_batch_rows, track, delta)
                if track:
                    self._touch(pointed)
                rnd["rows"] += n
                self.w["copied"][name] = self.w["copied"].get(name, 0) + n
                if last is not None:
                    cursor = last
                done = n < s.move_batch_rows
                if done and name in DELETABLE:
                    rnd["rows"] += await delete_gone(self.src, self.dst, t, self.tenant_id)
                rnd["cursors"][name] = "done" if done else cursor
                if not final and time.monotonic() - saved >= SAVE_EVERY_S:
                    await self.save(step)
                    saved = time.monotonic()
                elapsed = time.monotonic() - started
                self.emit(step=step, event="batch", table=name, rows=n, table_rows=self.w["copied"][name],
                          round=self.w.get("rounds", 0) + 1, round_rows=rnd["rows"], rows_per_s=round(rnd["rows"] / elapsed) if elapsed else None,
                          rows_copied=sum(self.w["copied"].values()),
                          rows_planned=sum((self.w.get("planned_rows") or {}).values()) or None,
                          freeze_ms=self._freeze_ms())
                if final and self._freeze_ms() > s.move_freeze_s_limit * 1000:
                    raise _FreezeOverrun()
                if done:
                    break
                if s.move_batch_pause_s:
                    await asyncio.sleep(s.move_batch_pause_s)
        return rnd["rows"]

    async def _check_running(self) -> None:
        if await self.conn.fetchval("SELECT state FROM moves WHERE id = $1", self.move["id"]) != "running":
            raise _Stopped()

    def _freeze_ms(self) -> float | None:
        if "frozen_at" not in self.w:
            return None
        end = self.w.get("unfrozen_at") or time.time()
        return round((end - self.w["frozen_at"]) * 1000, 1)

    async def step_copy(self) -> str:
        # A move back to a cell the tenant left: its moved-out copy there goes first (the copy upserts on natural
        # keys, and would leave rows gone or changed since), but for the tenant row and its key hashes (the source's
        # keys are a superset: a key is never deleted while the tenant has moves), the row going from moved_out to
        # arriving (both 421: a stale router follows the route; it never reads the copy being made), never missing
        # (401).
        if await self.dst.fetchval("SELECT state FROM tenants WHERE id = $1", self.tenant_id) == "moved_out":
            async with self._alive():
                self.w["replaced_on_target"] = await purge_tenant(
                    self.dst, self.tables, self.tenant_id, self.settings.move_batch_rows, keep=PURGE_KEEPS)
            await self.dst.execute("UPDATE tenants SET state = 'arriving', leaving_since = NULL WHERE id = $1 AND "
                                   "state = 'moved_out'", self.tenant_id)
        # The tenant row first, arriving: the target serves it nothing until the flip.
        await self._round("copy", None)
        self.w["since"] = self.w["round"]["next_since"]
        self._keep_fence_point()
        self.w["rounds"] = 1
        return "catch_up"

    def _keep_fence_point(self) -> None:
        """What bounds the next round: the floors and what was not final at the fence point of the one just done."""
        rnd = self.w["round"]
        self.w["since_floors"], self.w["since_queued"], self.w["since_open"] = \
            rnd["floors"], rnd["queued"], rnd.get("open", {})

    async def step_catch_up(self) -> str:
        s = self.settings
        while True:
            since = self.w["since"]
            rows = await self._round("catch_up", since, await self._delta())
            self.w["since"] = self.w["round"]["next_since"]
            self._keep_fence_point()
            self.w["round"] = {}
            self.w["rounds"] = self.w.get("rounds", 1) + 1
            self.w["last_round_rows"] = rows
            previous, self.w["catch_up_previous_rows"] = self.w.get("catch_up_previous_rows"), rows
            if "pre_verify" in self.w:
                await self._check_round()
            await self.save("catch_up")
            if catch_up_ends(rows, previous, self.w["rounds"], s):
                if "pre_verify" in self.w and not fits_freeze(rows, s):
                    self._wait_for_the_freeze(rows)
                    continue
                # Once before the pre-verification, and again after it (what was written while it ran must
                # not wait for the freeze), recording what the rounds touch from then on.
                self.w.pop("catch_up_previous_rows")
                if "pre_verify" not in self.w:
                    return "pre_verify"
                await self._leave()  # its wait here, not in the freeze step (which makes sure again)
                return "freeze"

    def _wait_for_the_freeze(self, rows: int) -> None:
        """After a round too large for the freeze (fits_freeze): more rounds, for at most move_catch_up_s_max from
        the first such round of this mover; then the move stops, the tenant still active on its source, resumable
        (`moves resume`, a new wait) or abortable."""
        s = self.settings
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        expected_s = rows / s.move_rows_per_s_estimate
        if now - self._waiting_since > s.move_catch_up_s_max:
            raise LedgerctlError(
                "move_not_converging",
                f"move {self.move['id']}: tenant {self.tenant_id} writes faster than the move copies: for "
                f"{now - self._waiting_since:.0f} s no catch-up round was small enough for a freeze of at most "
                f"{s.move_freeze_s_max:g} s (the last copied {rows:,} rows, about {expected_s:.1f} s at "
                f"{s.move_rows_per_s_estimate:,.0f} rows/s). Nothing was frozen: the tenant is active on its source. "
                f"Resume the move when its writes slow (`ledgerctl moves resume {self.move['id']}`) or abort it "
                f"(`ledgerctl moves abort {self.move['id']}`)",
                details=report(self.move | {"watermarks": self.w}))
        self.emit(step="catch_up", event="waiting", round_rows=rows, freeze_s_expected=round(expected_s, 2),
                  freeze_s_max=s.move_freeze_s_max, waited_s=round(now - self._waiting_since, 1))

    async def step_pre_verify(self) -> str:
        # The whole tenant, while it still writes (the source has moved on since the last round: differences
        # are remembered and checked again inside the freeze, never failed here).
        point = await fence_point(self.src, self.tables, self.tenant_id, self.settings.move_freeze_lock_timeout_s)
        # The ORDERED floors are the last round's (see verify_copy); the seq floors this fence point's.
        since = self.w.get("since_floors") or {}
        floors = {n: f for n, f in point["floors"].items() if n not in ORDERED} | \
            {n: since[n] for n in ORDERED if n in since}
        async with self._alive():
            result = await verify_copy(self.src, self.dst, self.tables, self.tenant_id, floors)
        self.w["pre_verify"] = {k: result[k] for k in ("accounts", "accounts_off", "target_problems",
                                                       "audit_chain_head", "audit_chain_head_target", "counted")}
        self.w["pre_verify"]["differences"] = len(result["problems"])
        subjects, self.w["pre_verify"]["standing"] = await target_subjects(self.dst, result["target_problems"])
        self.w["unresolved"] = subjects
        self.w["pending"] = {"accounts": result["accounts_off"], "transactions": []}
        self.w["touched"] = {}
        self.w["versions_touched"] = False
        return "catch_up"

    async def _check_round(self) -> None:
        """After a catch-up round past the pre-verification, outside the freeze: the subjects it touched (and those
        that failed before) are checked; what fails is carried to the next round or the freeze, the rest is done
        with unless touched again."""
        touched = self.w["touched"]
        self.w["unresolved"] = resolve(self.w["unresolved"], touched)
        self.w["versions_touched"] = self.w["versions_touched"] or bool(touched.get("transactions"))
        _, self.w["pending"] = await check_subjects(self.src, self.dst, self.tenant_id,
                                                    _merge(self.w["pending"], touched))
        self.w["touched"] = {}

    async def _leave(self) -> None:
        """The tenant marked leaving on its source (tenants.leaving_since, cell migration 0226): from then on the
        source's processes remember none of its keys, and this waits until those they remembered before have expired
        (the largest CELL_API_KEY_CACHE_TTL_S the source's processes recorded, cell migration 0231; at least
        cells_api_key_cache_ttl_s, all of it on a cell without a record), the tenant writing meanwhile (the final
        catch-up copies it). So, once the source is moved_out, every request there is answered 421: a router that has
        not learnt of the flip never reads the books the tenant left after a write on its target, and no freeze
        waits for a key cache."""
        ttl_s = max(self.settings.cells_api_key_cache_ttl_s, await cell_tenants.key_cache_ttl(self.src) or 0.0)
        wait_s = await self.src.fetchval(
            "UPDATE tenants SET leaving_since = coalesce(leaving_since, clock_timestamp()) WHERE id = $1 RETURNING "
            "extract(epoch FROM leaving_since + make_interval(secs => $2) - clock_timestamp())::float8",
            self.tenant_id, ttl_s)
        if wait_s is not None and wait_s > 0:
            await asyncio.sleep(min(wait_s, ttl_s))

    async def step_freeze(self) -> str:
        await self._leave()  # done by the catch-up's end, but for a mover resumed here
        if "frozen_at" not in self.w:
            self.w["frozen_at"] = time.time()
            await self.save("freeze")
        # The exclusive form of the tenant's fence: waits out every write in flight; every later write (the
        # workers' apply included) finds the tenant frozen and is refused (the router holds and retries it).
        async with self.src.transaction():
            await self.src.execute("SELECT set_config('lock_timeout', $1, true)",
                                   f"{int(self.settings.move_freeze_lock_timeout_s * 1000)}ms")
            await self.src.execute("SELECT pg_advisory_xact_lock(hashtextextended('tenant:' || $1, 0))",
                                   self.tenant_id)
            # With its lease: past it the source ends the freeze on its own (ledger_thaw), should this mover die.
            lease = ", frozen_until = clock_timestamp() + make_interval(secs => $2)" if self._leased else ""
            state = await self.src.fetchval(f"UPDATE tenants SET state = 'frozen'{lease} WHERE id = $1 AND state IN "
                                            "('active', 'frozen') RETURNING state", self.tenant_id,
                                            *([self.settings.move_freeze_s_lease] if self._leased else []))
            if state is None:
                raise LedgerctlError("tenant_not_active", f"tenant {self.tenant_id} is not active on the source")
            # Every writer of the tenant has ended: its events take their positions now, in the source's order,
            # and the rest of its history is linked; the final catch-up copies both (txids mean nothing on the
            # target).
            await cell_events.sequence_tenant(self.src, self.tenant_id)
            await audit.seal_tenant(self.src, self.tenant_id)
        self.emit(step="freeze", event="frozen", freeze_ms=self._freeze_ms())
        return "final_catch_up"

    @property
    def _leased(self) -> bool:
        """Whether the source's freezes carry a lease (a cell migrated to 0223)."""
        return "frozen_until" in self.tables["tenants"].columns

    async def _frozen_on_source(self) -> bool:
        """Whether the freeze still holds on the source: not ended by its lease (ledger_thaw) while this mover was
        dead or slow, in which case the source may have taken writes the final catch-up did not copy."""
        return await self.src.fetchval("SELECT state FROM tenants WHERE id = $1", self.tenant_id) == "frozen"

    async def _delta(self) -> dict | None:
        """What bounds the next round's reads: the rows past the last round's floors and those reopened since
        (None for a move whose rounds kept no floors: it reads whole)."""
        if not self.w.get("since_floors"):
            return None
        return await reopened(self.src, self.dst, self.tenant_id, self.w["since_floors"], self.w["since_queued"],
                              self.w.get("since_open"))

    async def step_final_catch_up(self) -> str:
        if not await self._frozen_on_source():
            return await self._give_up_the_freeze("final_catch_up")
        delta = await self._delta()
        await self._check_running()
        try:
            async with self.dst.transaction():  # one commit (one WAL flush) on the target, not one per table
                self.w["final_rows"] = await self._round("final_catch_up", self.w["since"], delta, final=True)
        except _FreezeOverrun:  # the target's part of the round rolled back, temp tables it created with it
            _TEMPS.pop(self.dst, None)
            return await self._give_up_the_freeze("final_catch_up")
        self.w["round"] = {}
        return "verify"

    async def _give_up_the_freeze(self, step: str) -> str:
        """The final catch-up ran past move_freeze_s_limit (a slower copy than estimated, or a mover resumed long after
        it died in the freeze), or the source ended the freeze at its lease (move_freeze_s_lease) before the flip: the
        tenant is unfrozen on its source and the catch-up rounds resume from the horizon they had reached, as if the
        freeze had not begun (what the freeze wrote on the source, its events' positions and its audit seal, and what
        the tenant wrote since its lease ended, are copied by the next rounds). After FREEZES_GIVEN_UP_MAX of them the
        move stops,
        `move_not_converging`, the tenant active on its source: resumable or abortable."""
        await self.src.execute(UNFREEZE_SOURCE, self.tenant_id)
        given_up = self.w.setdefault("freezes_given_up_ms", [])
        given_up.append(self._freeze_ms())
        self.w.pop("frozen_at", None)
        self.w["round"] = {}
        self.emit(step=step, event="freeze_given_up", freeze_ms=given_up[-1])
        if len(given_up) % FREEZES_GIVEN_UP_MAX == 0:
            await self.save("catch_up")
            raise LedgerctlError(
                "move_not_converging",
                f"move {self.move['id']}: {len(given_up)} freezes of tenant {self.tenant_id} given up, each when its "
                f"final catch-up ran past {self.settings.move_freeze_s_limit:g} s or its lease of "
                f"{self.settings.move_freeze_s_lease:g} s ended "
                f"({', '.join(f'{ms:,.0f}' for ms in given_up)} ms). The tenant is active on its source. Resume the "
                f"move when its writes slow (`ledgerctl moves "
                f"resume {self.move['id']}`) or abort it (`ledgerctl moves abort {self.move['id']}`)",
                details=report(self.move | {"watermarks": self.w}))
        return "catch_up"

    async def step_verify(self) -> str:
        if not await self._frozen_on_source():
            return await self._give_up_the_freeze("verify")
        if "pending" in self.w:
            touched = self.w["touched"]
            result = await verify_delta(self.src, self.dst, self.tables, self.tenant_id, self.w["pre_verify"],
                                        _merge(self.w["pending"], touched), resolve(self.w["unresolved"], touched),
                                        self.w["versions_touched"] or bool(touched.get("transactions")))
        else:  # a move started before pre_verify existed
            result = await verify_copy(self.src, self.dst, self.tables, self.tenant_id)
        # The sealed audit chain, sealed whole inside the freeze and copied by the final round, ends alike.
        source_head, target_head = [await audit.heads(c, [self.tenant_id]) for c in (self.src, self.dst)]
        if source_head != target_head:
            result["problems"].append(f"sealed audit chain head differs: source {source_head}, target {target_head}")
            result["ok"] = False
        self.w["verification"] = result
        if not result["ok"] and not await self._frozen_on_source():
            return await self._give_up_the_freeze("verify")  # the source took writes past the lease: not a failure
        if not result["ok"]:
            await self.save("verify")
            # Never leave the tenant frozen: it goes back to active on its source; `moves abort` removes the copy.
            await self.src.execute(UNFREEZE_SOURCE, self.tenant_id)
            self.w["unfrozen_at"] = time.time()
            async with self.conn.transaction():
                await self.conn.execute("SET LOCAL synchronous_commit = on")
                await self.conn.execute(Q["finish_move"], self.move["id"], "failed", "verification failed", self.w,
                                        ["running"])
                await self.conn.execute(Q["set_tenant_state"], self.tenant_id, "active")
                await catalog.audit(self.conn, self.settings.actor, "moves.failed", f"tenant:{self.tenant_id}",
                                    {"move": str(self.move["id"]), "problems": result["problems"][:20]})
            raise LedgerctlError("move_verification_failed",
                                 f"move {self.move['id']}: the copy does not verify; the tenant stays on "
                                 f"{self.move['source_cell']} (run `ledgerctl moves abort {self.move['id']}`)",
                                 EXIT_VIOLATIONS, details={"violations": result["problems"]})
        return "flip"

    async def step_flip(self) -> str:
        # The freeze committed to the flip on the source first: its lease cleared while it still holds, so that the
        # source never ends it on its own after the route moved (two cells taking writes). A source that ended it
        # already (ledger_thaw: this mover dead or slow past the lease) may have taken writes: back to the rounds. A
        # mover that dies between this and the flip's commit (milliseconds) leaves the tenant frozen until `moves
        # resume`.
        if self._leased and await self.src.fetchval(
                "UPDATE tenants SET frozen_until = NULL WHERE id = $1 AND state = 'frozen' RETURNING id",
                self.tenant_id) is None:
            return await self._give_up_the_freeze("flip")
        # The copy is whole and the source frozen for good: the target serves the tenant's reads (its writes wait for
        # the unfreeze) from before the route moves, so that a router that follows the new route is never answered
        # 421 there.
        await self.dst.execute("UPDATE tenants SET state = 'frozen' WHERE id = $1 AND state = 'arriving'",
                               self.tenant_id)
        async with self.conn.transaction():
            await self.conn.execute("SET LOCAL synchronous_commit = on")
            tenant = await catalog.fetch_tenant(self.conn, self.tenant_id)
            if tenant["cell"] != self.move["target_cell"]:
                await self.conn.fetchrow(Q["set_tenant_route"], self.tenant_id, self.move["target_cell"])
                await catalog.audit(self.conn, self.settings.actor, "tenants.move", f"tenant:{self.tenant_id}",
                                    {"move": str(self.move["id"]), "from": self.move["source_cell"],
                                     "to": self.move["target_cell"]})
            # In the same transaction as the route: an abort either came first (this fails) or is refused.
            await self.save("source_moved_out")
        await self._publish()
        return "source_moved_out"

    async def _publish(self) -> None:
        tenant = await catalog.fetch_tenant(self.conn, self.tenant_id)
        self.w["published"] = await publish_route(self.settings, tenant)
        self.w["epoch"] = tenant["epoch"]

    async def step_source_moved_out(self) -> str:
        if "published" not in self.w:
            await self._publish()
        await self.src.execute("UPDATE tenants SET state = 'moved_out', leaving_since = NULL WHERE id = $1",
                               self.tenant_id)
        return "unfreeze"

    async def step_unfreeze(self) -> str:
        # No source process serves the tenant on a key it remembered (Mover._leave): the target takes its writes now.
        await self.dst.execute("UPDATE tenants SET state = 'active' WHERE id = $1 AND state IN ('frozen', 'arriving')",
                               self.tenant_id)
        if "unfrozen_at" not in self.w:
            self.w["unfrozen_at"] = time.time()
        self.w["freeze_ms"] = self._freeze_ms()
        self.emit(step="unfreeze", event="unfrozen", freeze_ms=self.w["freeze_ms"])
        # The deliveries the tenant left pending on its source are the target's to make: held there, out of the way of
        # the source's claims (cell migration 0228), after the freeze, not in it.
        self.w["deliveries_held_on_source"] = await self.src.fetchval("SELECT ledger_webhook_hold_tenant($1)",
                                                                      self.tenant_id)
        return "post_verify"

    async def step_post_verify(self) -> str:
        # The target's invariants whole, on the live target (one consistent snapshot, the tenant writing again):
        # what the delta did not recheck inside the freeze. Past the flip, a problem is reported, not undone.
        async with self._alive():
            problems = await verify_cell(self.dst, self.tenant_id)
        self.w["post_verify"] = {"ok": not problems, "problems": problems[:50]}
        return "done"

    async def finish(self) -> None:
        async with self.conn.transaction():
            await self.conn.execute("SET LOCAL synchronous_commit = on")
            if await self.conn.fetchval(Q["finish_move"], self.move["id"], "done", None, self.w, ["running"]) is None:
                raise _Stopped()
            await self.conn.execute(Q["set_tenant_state"], self.tenant_id, "active")
            await catalog.audit(self.conn, self.settings.actor, "moves.done", f"tenant:{self.tenant_id}",
                                {"move": str(self.move["id"]), "freeze_ms": self.w.get("freeze_ms")})


class _Stopped(Exception):
    """The move was aborted (or finished) by someone else while this mover ran."""


class _FreezeOverrun(Exception):
    """The final catch-up ran past move_freeze_s_limit: Mover._give_up_the_freeze."""


# ---- use cases ---------------------------------------------------------------------------------------------

async def fetch_move(conn: asyncpg.Connection, move_id) -> dict:
    try:
        move_uuid = uuid.UUID(str(move_id))
    except ValueError:
        raise LedgerctlError("unknown_move", f"no move {move_id}") from None
    row = await conn.fetchrow(Q["fetch_move"], move_uuid)
    if row is None:
        raise LedgerctlError("unknown_move", f"no move {move_id}")
    return dict(row)


def report(move: dict) -> dict:
    """A move as the operator sees it: steps with their durations, rows copied, the freeze window, verification."""
    w = move.get("watermarks") or {}
    verification = w.get("verification")
    return {
        "id": str(move["id"]), "tenant": move["tenant_id"], "source": move["source_cell"],
        "target": move["target_cell"], "state": move["state"], "step": move["step"], "error": move.get("error"),
        "steps": [{"step": s, "ms": w.get("steps_ms", {}).get(s)} for s in STEPS[:-1] if s in w.get("steps_ms", {})],
        "rows_copied": w.get("copied", {}), "rounds": w.get("rounds"), "final_catch_up_rows": w.get("final_rows"),
        "freeze_ms": w.get("freeze_ms"), "freezes_given_up_ms": w.get("freezes_given_up_ms", []),
        "verification": None if verification is None else {
            "ok": verification["ok"], "rows": verification["rows"], "accounts": verification["accounts"],
            "audit_chain_head": verification["audit_chain_head"], "problems": verification["problems"],
            "delta": verification.get("delta", False), "accounts_checked": verification.get("accounts_checked"),
            "transactions_checked": verification.get("transactions_checked"),
            "pre_verify_differences": (w.get("pre_verify") or {}).get("differences")},
        "post_verify": w.get("post_verify"), "epoch": w.get("epoch"), "purged": w.get("purged"),
        "created_at": str(move["created_at"]) if move.get("created_at") else None,
    }


async def plan_move(conn: asyncpg.Connection, settings: ControlPlaneSettings, tenant_id: str,
                    target_cell: str) -> dict:
    """Check that the move can start and say what it will do. Changes nothing."""
    tenant = await catalog.fetch_tenant(conn, tenant_id)
    target = await catalog.fetch_cell(conn, target_cell)
    source = await catalog.fetch_cell(conn, tenant["cell"])
    if target["name"] == source["name"]:
        raise LedgerctlError("same_cell", f"tenant {tenant_id} already lives on cell {target_cell}")
    if target["state"] != "active":
        raise LedgerctlError("cell_not_active", f"cell {target_cell} is {target['state']}: it takes no tenants")
    if tenant["state"] == "creating":
        raise LedgerctlError("tenant_creating", f"tenant {tenant_id} is still being created: run `ledgerctl tenants "
                             f"create {tenant_id}` to finish it first")
    running = await conn.fetchval(Q["running_move_of_tenant"], tenant_id)
    if running is not None:
        raise LedgerctlError("already_moving", f"tenant {tenant_id} is already moving (move {running})")
    async with _cell(source) as src, _cell(target) as dst:
        tables = await discover(src)
        mismatch = _same_schema(tables, await discover(dst))
        if mismatch:
            raise LedgerctlError("schema_mismatch", "source and target cells differ (migrate both): "
                                 + "; ".join(mismatch))
        await require_migrated(src, source["name"])
        await require_migrated(dst, target["name"])
        state = await src.fetchval("SELECT state FROM tenants WHERE id = $1", tenant_id)
        if state is None:  # `tenants delete` removes the cell's row first, then the catalog's
            raise LedgerctlError("tenant_being_deleted", f"tenant {tenant_id} is being deleted: cell "
                                 f"{source['name']} no longer holds it, its catalog row goes next (`ledgerctl tenants "
                                 f"delete {tenant_id}`; run it again if it stopped before that): nothing moved")
        if state != "active":
            raise LedgerctlError("tenant_not_active", f"tenant {tenant_id} is {state} on cell {source['name']}")
        # A cell the tenant moved out of keeps a copy (purged: its tenant row and key hashes) that no route points
        # at: a move back replaces it (step_copy). Any other state there is a copy some move may still own.
        on_target = await dst.fetchval("SELECT state FROM tenants WHERE id = $1", tenant_id)
        if on_target not in (None, "moved_out"):
            raise LedgerctlError("tenant_on_target", f"cell {target_cell} already holds rows of tenant {tenant_id} "
                                 f"(state {on_target}): a move of it there has not finished or left them "
                                 f"(`ledgerctl moves list --tenant {tenant_id}`; `moves abort` it again to remove "
                                 "them)")
        rows = await count_rows(src, tables, tenant_id)
    total = sum(rows.values())
    return {"tenant": tenant_id, "source": source["name"], "target": target["name"], "rows": rows,
            "rows_total": total, "estimate_s": round(total / settings.move_rows_per_s_estimate, 1),
            "replaces_moved_out_copy": on_target == "moved_out", "steps": list(STEPS[:-1])}


class _cell:
    def __init__(self, cell: dict) -> None:
        self.cell = cell

    async def __aenter__(self) -> asyncpg.Connection:
        self.conn = await catalog.connect(self.cell["database_url"], what=f"the database of cell {self.cell['name']}")
        return self.conn

    async def __aexit__(self, *exc) -> None:
        await self.conn.close()


async def start_move(conn: asyncpg.Connection, settings: ControlPlaneSettings, plan: dict) -> dict:
    move_id = uuid.uuid4()
    async with conn.transaction():
        # The target held active until the move is recorded: a drain of it waits, then sees the move coming in.
        state = await conn.fetchval(Q["lock_cell_for_placement"], plan["target"])
        if state != "active":
            raise LedgerctlError("cell_not_active", f"cell {plan['target']} is {state}: it takes no tenants")
        # The tenant's catalog row held to the commit, as `tenants delete` holds it: one deleted since the plan is
        # refused here, and a delete that comes later finds the move.
        # A move recorded meanwhile (it held the row first) is seen now, and so is the cell it moved the tenant to.
        tenant = await conn.fetchrow(Q["lock_tenant_for_change"], plan["tenant"])
        if tenant is None:
            raise LedgerctlError("tenant_deleted", f"tenant {plan['tenant']} was deleted (`ledgerctl tenants delete`) "
                                 "after the move was planned: nothing moved")
        running = await conn.fetchval(Q["running_move_of_tenant"], plan["tenant"])
        if running is not None:
            raise LedgerctlError("already_moving", f"tenant {plan['tenant']} is already moving (move {running}, "
                                 f"`ledgerctl moves show {running}`): nothing moved")
        if tenant["cell"] != plan["source"]:
            raise LedgerctlError("tenant_changed", f"tenant {plan['tenant']} lives on cell {tenant['cell']} now, not "
                                 f"on cell {plan['source']} as the plan showed (another move took it there "
                                 "meanwhile): nothing moved; run the command again for a new plan")
        row = await conn.fetchrow(Q["insert_move"], move_id, plan["tenant"], plan["source"], plan["target"],
                                  {"planned_rows": plan["rows"]})
        await conn.execute(Q["set_tenant_state"], plan["tenant"], "moving")
        await catalog.audit(conn, settings.actor, "moves.start", f"tenant:{plan['tenant']}",
                            {"move": str(move_id), "from": plan["source"], "to": plan["target"]})
    return dict(row)


async def run_move(conn: asyncpg.Connection, settings: ControlPlaneSettings, move_id,
                   progress: Progress | None = None) -> dict:
    """Run (or resume) a move to its end. One mover per move: a second one is refused."""
    move = await fetch_move(conn, move_id)
    if move["state"] != "running":
        raise LedgerctlError("move_not_running", f"move {move_id} is {move['state']}", details=report(move))
    if not await _lock_move(conn, str(move["id"])):
        raise LedgerctlError("move_busy", f"move {move_id} is being run by another mover")
    try:
        return await Mover(conn, settings, move, progress or (lambda event: None)).run()
    finally:
        if not conn.is_closed():  # a lost session took its lock with it
            await conn.fetchval(Q["unlock_move"], str(move["id"]))


async def _lock_move(conn: asyncpg.Connection, move_id: str) -> bool:
    """The move's lock, waited for at most MOVE_LOCK_WAIT_S_MAX (a try per poll: a blocking wait could not be bounded
    without a statement timeout that a lost session would also leave behind)."""
    deadline = time.monotonic() + MOVE_LOCK_WAIT_S_MAX
    while not await conn.fetchval(Q["lock_move"], move_id):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(MOVE_LOCK_POLL_S)  # a poll's pause: the loop ends on the lock or the deadline
    return True


def refuse_abort(move: dict) -> None:
    """No abort past the flip (ledgerctl asks this before it shows an abort's plan, and the abort itself)."""
    if move["state"] == "done" or move["step"] not in ABORTABLE:
        raise LedgerctlError("move_past_flip", f"move {move['id']} has flipped the route ({move['step']}): "
                             "move the tenant back instead")


async def refuse_purge(conn: asyncpg.Connection, move: dict) -> None:
    """Only a finished move's source copy, and never the cell its tenant lives on (ledgerctl asks this before it
    shows a purge's plan, and the purge itself)."""
    if move["state"] != "done":
        raise LedgerctlError("move_not_done", f"move {move['id']} is {move['state']}: only a finished move is purged")
    tenant = await catalog.fetch_tenant(conn, move["tenant_id"])
    if tenant["cell"] == move["source_cell"]:
        raise LedgerctlError("tenant_on_source", f"tenant {move['tenant_id']} lives on {move['source_cell']} again")


async def tenant_left_cell(conn: asyncpg.Connection, move: dict) -> bool:
    """Whether the move's target is a cell its tenant moved out of (it keeps a moved_out tenant row and key hashes)."""
    return await conn.fetchval(Q["tenant_left_cell"], move["tenant_id"], move["target_cell"])


async def abort_move(conn: asyncpg.Connection, settings: ControlPlaneSettings, move_id) -> dict:
    """Before the flip: the tenant back to active on its source, the target's partial copy removed (on a cell the
    tenant left, all but its moved-out tenant row and key hashes, as `moves purge` leaves it).
    Idempotent (an aborted or failed move can be aborted again to finish its clean-up)."""
    move = await fetch_move(conn, move_id)
    refuse_abort(move)
    if move["state"] == "running":
        if await conn.fetchval(Q["abort_move"], move["id"], "aborted by the operator", sorted(ABORTABLE)) is None:
            move = await fetch_move(conn, move_id)
            if move["state"] == "done" or move["step"] not in ABORTABLE:
                raise LedgerctlError("move_past_flip", f"move {move_id} flipped meanwhile")
    elif move["state"] == "failed":
        await conn.execute(Q["finish_move"], move["id"], "aborted", move["error"], None, ["failed"])
    # A live mover stops at its next batch: the copy is deleted only once it has let go of the move's lock, or the
    # batch it is writing on the target would commit after the deletes and stay there.
    if not await _lock_move(conn, str(move["id"])):
        raise LedgerctlError("move_busy", f"move {move_id} is aborted, but its mover has not stopped yet: run "
                             f"`ledgerctl moves abort {move_id}` again to delete its copy on cell {move['target_cell']}")
    try:
        return await _undo(conn, settings, move)
    finally:
        if not conn.is_closed():  # a lost session took its lock with it
            await conn.fetchval(Q["unlock_move"], str(move["id"]))


async def _undo(conn: asyncpg.Connection, settings: ControlPlaneSettings, move: dict) -> dict:
    """An aborted move's clean-up, its mover stopped: the tenant active on its source, the target's copy deleted."""
    source = await catalog.fetch_cell(conn, move["source_cell"])
    target = await catalog.fetch_cell(conn, move["target_cell"])
    tenant = await catalog.fetch_tenant(conn, move["tenant_id"])
    if tenant["cell"] != source["name"]:
        raise LedgerctlError("move_past_flip", f"tenant {move['tenant_id']} is routed to {tenant['cell']}")
    left = await tenant_left_cell(conn, move)
    async with _cell(source) as src, _cell(target) as dst:
        await src.execute(UNFREEZE_SOURCE, move["tenant_id"])
        tables = await discover(dst)
        if left:
            # A move back to a cell the tenant left: that cell is left as a purge leaves it, the tenant row moved_out
            # first and its key hashes kept (a stale router or client gets 421 and follows the route, never 401).
            await dst.execute("UPDATE tenants SET state = 'moved_out' WHERE id = $1 AND state IN "
                              "('frozen', 'arriving')", move["tenant_id"])
        deleted = await purge_tenant(dst, tables, move["tenant_id"], settings.move_batch_rows,
                                     keep=PURGE_KEEPS if left else frozenset())
    async with conn.transaction():
        await conn.execute(Q["set_tenant_state"], move["tenant_id"], "active")
        await catalog.audit(conn, settings.actor, "moves.abort", f"tenant:{move['tenant_id']}",
                            {"move": str(move["id"]), "deleted_on_target": deleted})
    result = report(await fetch_move(conn, move["id"]))
    result["deleted_on_target"] = deleted
    return result


async def purge_move(conn: asyncpg.Connection, settings: ControlPlaneSettings, move_id) -> dict:
    """A finished move's source copy, deleted in batches (the tenant is moved_out there)."""
    move = await fetch_move(conn, move_id)
    await refuse_purge(conn, move)
    source = await catalog.fetch_cell(conn, move["source_cell"])
    async with _cell(source) as src:
        state = await src.fetchval("SELECT state FROM tenants WHERE id = $1", move["tenant_id"])
        if state not in (None, "moved_out"):
            raise LedgerctlError("tenant_active", f"tenant {move['tenant_id']} is {state} on {source['name']}")
        # The tenant row (moved_out) and its key hashes stay: a client or router that still calls this cell
        # gets 421 (and the router follows the new route), never 401.
        deleted = await purge_tenant(src, await discover(src), move["tenant_id"], settings.move_batch_rows,
                                     settings.move_batch_pause_s, keep=PURGE_KEEPS)
    w = dict(move["watermarks"] or {})
    w["purged"] = deleted
    async with conn.transaction():
        await conn.execute("UPDATE moves SET watermarks = $2, updated_at = now() WHERE id = $1", move["id"], w)
        await catalog.audit(conn, settings.actor, "moves.purge", f"tenant:{move['tenant_id']}",
                            {"move": str(move["id"]), "deleted": deleted})
    return report(await fetch_move(conn, move["id"]))


async def list_moves(conn: asyncpg.Connection, state: str | None, tenant_id: str | None, limit: int,
                     update_age_max_s: float = 0) -> list[dict]:
    return [report(dict(r)) | {"stalled": stalled(r, update_age_max_s)}
            for r in await conn.fetch(Q["list_moves"], state, tenant_id, limit)]


def stalled(move, update_age_max_s: float) -> bool:
    """A running move whose row no mover has updated for longer than update_age_max_s (0: never): its mover died or
    hangs. A live mover updates it after every batch (at most SAVE_EVERY_S apart) and step, and every TOUCH_EVERY_S
    through the work that saves nothing (Mover._alive)."""
    return bool(update_age_max_s) and move["state"] == "running" and move["idle_s"] > update_age_max_s


async def stalled_findings(conn: asyncpg.Connection, cell_name: str | None, tenant_id: str | None,
                           update_age_max_s: float) -> list[str]:
    """`ledgerctl verify`'s findings about the stalled moves (stalled()) of a tenant, or into or off a cell: each names
    the command that finishes it, and before the flip the one that gives it up."""
    found = []
    for r in await conn.fetch(Q["running_moves_of"], cell_name, tenant_id):
        if not stalled(r, update_age_max_s):
            continue
        undo = (f" (or `ledgerctl moves abort {r['id']}` gives it up: the tenant back to active on "
                f"{r['source_cell']})" if r["step"] in ABORTABLE else " (past its flip it cannot be aborted)")
        found.append(f"move {r['id']} of tenant {r['tenant_id']} ({r['source_cell']} -> {r['target_cell']}) has been "
                     f"running at step {r['step']} with no mover updating it for {r['idle_s']:.0f} s (more than "
                     f"{update_age_max_s:g} s: its mover died or hangs; the tenant stays `moving`): `ledgerctl moves "
                     f"resume {r['id']}` finishes it{undo}")
    return found


# ---- draining a cell ---------------------------------------------------------------------------------------

async def plan_drain(conn: asyncpg.Connection, cell_name: str) -> dict:
    """What `cells drain` will do: the moves still running off the cell (resumed first, to their target), then
    each of its tenants to the least-loaded active cell, counted as the drain goes. Changes nothing."""
    cell = await catalog.fetch_cell(conn, cell_name)
    if cell["state"] == "disabled":
        raise LedgerctlError("cell_disabled", f"cell {cell_name} is disabled: nothing to drain through it")
    loads = {r["name"]: r["tenants"] for r in await conn.fetch(Q["active_cell_loads"], cell_name)}
    running = [dict(r) for r in await conn.fetch(Q["running_moves_from_cell"], cell_name)]
    resumed = {r["tenant_id"] for r in running}
    tenants = [r["id"] for r in await conn.fetch(Q["tenants_of_cell"], cell_name) if r["id"] not in resumed]
    if tenants and not loads:
        raise LedgerctlError("no_active_cell", f"there is no other active cell to move the tenants of {cell_name} to")
    planned = [{"tenant": r["tenant_id"], "target": r["target_cell"], "resume": str(r["id"])} for r in running]
    for r in running:
        if r["target_cell"] in loads:
            loads[r["target_cell"]] += 1
    for tenant in tenants:
        target = min(loads, key=lambda name: (loads[name], name))
        loads[target] += 1
        planned.append({"tenant": tenant, "target": target, "resume": None})
    return {"cell": cell_name, "state": cell["state"], "moves": planned}


async def drain_cell(conn: asyncpg.Connection, settings: ControlPlaneSettings, cell_name: str,
                     progress: Progress | None = None, announce: Callable[[dict], None] | None = None) -> dict:
    """Mark the cell draining (placement skips it from now on), then move its tenants off one at a time: the
    moves already running off it are resumed first, then each tenant goes to the least-loaded active cell at
    the time its move starts. Resumable: run it again and it goes on. The first move that fails stops it."""
    cell = await catalog.fetch_cell(conn, cell_name)
    if cell["state"] == "disabled":
        raise LedgerctlError("cell_disabled", f"cell {cell_name} is disabled: nothing to drain through it")
    if cell["state"] != "draining":
        async with conn.transaction():
            await conn.fetchval(Q["set_cell_draining"], cell_name)
            await catalog.audit(conn, settings.actor, "cells.drain", f"cell:{cell_name}", {})
    done: list[dict] = []
    while True:
        state = (await catalog.fetch_cell(conn, cell_name))["state"]
        if state != "draining":  # undrained meanwhile: stop between moves
            left = len(await conn.fetch(Q["tenants_of_cell"], cell_name))
            return {"cell": cell_name, "state": state, "tenants_left": left, "moves": done}
        running = await conn.fetchrow(Q["running_moves_from_cell"], cell_name)
        tenant = None if running else next(iter(await conn.fetch(Q["tenants_of_cell"], cell_name)), None)
        if running is None and tenant is None:
            incoming = await conn.fetch(Q["running_moves_into_cell"], cell_name)
            if incoming:  # started before the drain: each would land its tenant here after the drain called it empty
                raise LedgerctlError("move_into_draining_cell", f"the drain of cell {cell_name} stopped: move(s) into "
                                     "it are running (" + ", ".join(f"{r['id']} of tenant {r['tenant_id']}"
                                                                    for r in incoming)
                                     + "): let them finish (or `ledgerctl moves abort` them), then run the drain "
                                     "again", details={"moves_done": done})
            break
        try:
            if running is not None:
                move_id = running["id"]
                if announce:
                    announce({"tenant": running["tenant_id"], "target": running["target_cell"], "move": str(move_id),
                              "resumed": True})
            else:
                target = await conn.fetchval(Q["active_cell_loads"], cell_name)
                if target is None:
                    raise LedgerctlError("no_active_cell", f"there is no other active cell to move the tenants of "
                                         f"{cell_name} to")
                try:
                    if tenant["state"] == "creating":  # placed before the cell was draining: finished, then moved off
                        await finish_tenant(conn, tenant["id"])
                    plan = await plan_move(conn, settings, tenant["id"], target)
                    move = await start_move(conn, settings, plan)
                except LedgerctlError as error:
                    if error.code not in ("tenant_deleted", "unknown_tenant", "tenant_changed"):
                        raise
                    continue  # deleted (`tenants delete`) or moved off since the drain read it: nothing left to move
                move_id = move["id"]
                if announce:
                    announce({"tenant": tenant["id"], "target": target, "move": str(move_id), "resumed": False})
            done.append(await run_move(conn, settings, move_id, progress))
        except LedgerctlError as error:
            details = error.details if isinstance(error.details, dict) else {}
            raise LedgerctlError(error.code, f"the drain of cell {cell_name} stopped: {error.message}",
                                 error.exit_code, details={**details, "moves_done": done}) from error
    return {"cell": cell_name, "state": "draining", "tenants_left": 0, "moves": done}


async def undrain_cell(conn: asyncpg.Connection, settings: ControlPlaneSettings, cell_name: str) -> dict:
    """A draining cell back to active: placement uses it again; a drain still running stops after its current
    move. Idempotent; a disabled cell is refused."""
    cell = await catalog.fetch_cell(conn, cell_name)
    if cell["state"] == "disabled":
        raise LedgerctlError("cell_disabled", f"cell {cell_name} is disabled: enable it, not undrain it")
    if cell["state"] == "draining":
        async with conn.transaction():
            await conn.fetchval(Q["set_cell_active"], cell_name)
            await catalog.audit(conn, settings.actor, "cells.undrain", f"cell:{cell_name}", {})
    return await catalog.fetch_cell(conn, cell_name)
