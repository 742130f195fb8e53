"""The invariants of DESIGN.md section 8, recomputed from entries: used by tests, ledgerctl and the worker (read-only)."""

from __future__ import annotations

import hashlib

import asyncpg

from cell.store.queries import Q


async def audit_chain_head(conn: asyncpg.Connection, tenant_id: str) -> str:
    """One hash over every version hash in (transaction, version) order: equal on both sides of a move."""
    digest = hashlib.sha256()
    for r in await conn.fetch(Q["verify_versions"], tenant_id):
        digest.update(bytes(r["hash"]))
    return digest.hexdigest()


async def verify(conn: asyncpg.Connection, tenant_id: str | None = None,
                 unapplied_age_max_s: float | None = None) -> list[str]:
    """Every violation found (empty: all invariants hold). Read-only; safe on a live cell. Of the tenant named, whatever
    its state; of the cell (tenant_id None), every tenant it serves, not the copies it holds but does not serve
    (verify.sql): the states read in the same snapshot as the rows."""
    problems: list[str] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for r in await conn.fetch(Q["verify_unbalanced_transactions"], tenant_id):
            problems.append(f"transaction {r['transaction_id']} does not balance in {r['currency']}: "
                            f"debits {r['debits']} != credits {r['credits']}")
        for r in await conn.fetch(Q["verify_ledger_sums"], tenant_id):
            problems.append(f"ledger {r['ledger_id']} {r['currency']}: debits != credits "
                            f"(pending {r['pending_debits']}/{r['pending_credits']}, "
                            f"posted {r['posted_debits']}/{r['posted_credits']})")
        for r in await conn.fetch(Q["verify_totals_from_entries"], tenant_id):
            problems.append(f"account {r['account_id']}: cached balance differs from entries "
                            f"(cache {r['pending_debits']}/{r['pending_credits']}/{r['posted_debits']}/"
                            f"{r['posted_credits']} v{r['lock_version']}; entries {r['e_pd']}/{r['e_pc']}/"
                            f"{r['e_od']}/{r['e_oc']}; effects {r['f_pd']}/{r['f_pc']}/{r['f_od']}/{r['f_oc']}, "
                            f"{r['applied']} applied, max version {r['max_version']})")
        for r in await conn.fetch(Q["verify_resulting_balances"], tenant_id):
            problems.append(f"account {r['account_id']}: resulting balance at lock_version {r['lock_version']} "
                            "is not the running sum")
        for r in await conn.fetch(Q["verify_effective_buckets"], tenant_id):
            problems.append(f"account {r['account_id']}: effective-time cache of {r['day']} differs from effects")
        for r in await conn.fetch(Q["verify_entry_effects"], tenant_id):
            problems.append(f"entry {r['id']} ({r['status']}): effects created={r['created']} posted={r['posted']} "
                            f"archived={r['archived']}")
        for r in await conn.fetch(Q["verify_transaction_versions_present"], tenant_id):
            problems.append(f"transaction {r['id']} is at version {r['version']} but has {r['versions']} versions")
        for r in await conn.fetch(Q["verify_transaction_times"], tenant_id):
            problems.append(f"transaction {r['id']} was last changed ({r['updated_at']}) before it was written, posted"
                            f" or archived ({r['created_at']}, {r['posted_at']}, {r['archived_at']})")
        for r in await conn.fetch(Q["verify_entry_times"], tenant_id):
            if r["created_at"] > r["transaction_updated_at"]:
                problems.append(f"entry {r['id']} was written ({r['created_at']}) after its transaction last changed "
                                f"({r['transaction_updated_at']})")
            if r["effective_at"] != r["transaction_effective_at"]:
                problems.append(f"entry {r['id']} is effective at {r['effective_at']}, its transaction at "
                                f"{r['transaction_effective_at']}")
        for r in await conn.fetch(Q["verify_statements"], tenant_id):
            problems.append(f"ledger account statement {r['id']}: balances differ from the effects at its lock version")
        for r in await conn.fetch(Q["verify_monitors"], tenant_id):
            problems.append(f"balance monitor {r['id']} of account {r['ledger_account_id']}: account monitored "
                            f"{r['monitored']}, evaluated to lock_version {r['lock_version']} of "
                            f"{r['account_lock_version']}, triggered {r['triggered']} where the condition is "
                            f"{r['holds']}")
        for r in await conn.fetch(Q["verify_settlements"], tenant_id):
            problems.append(f"ledger account settlement {r['id']} ({r['status']}, amount {r['amount']}): its entries "
                            f"(net {r['net']}, all settleable: {r['fit']}) or its transaction (entry "
                            f"{r['leg_amount']}, {r['leg_status']}) do not match it")
        if unapplied_age_max_s is not None:
            r = await conn.fetchrow(Q["verify_stale_unapplied"], tenant_id, float(unapplied_age_max_s))
            if r["n"]:
                problems.append(f"{r['n']} balance effects unapplied for more than {unapplied_age_max_s}s "
                                f"(oldest from {r['oldest']})")
        problems += await category_problems(conn, tenant_id)
        prev_txn, prev_hash = None, None
        for r in await conn.fetch(Q["verify_versions"], tenant_id):
            expected_prev = prev_hash if r["transaction_id"] == prev_txn else None
            stored_prev = bytes(r["prev_hash"]) if r["prev_hash"] is not None else None
            if stored_prev != expected_prev:
                problems.append(f"transaction {r['transaction_id']} version {r['version']}: broken audit link")
            prev_txn, prev_hash = r["transaction_id"], bytes(r["hash"])
        for r in await conn.fetch(Q["verify_version_hashes"], tenant_id):
            problems.append(f"transaction {r['transaction_id']} version {r['version']}: hash does not verify")
        if await conn.fetchval(Q["verify_insert_only_triggers"]) != 2:
            problems.append("insert-only triggers on entries/versions are missing or disabled")
    return problems


async def category_problems(conn: asyncpg.Connection, tenant_id: str | None) -> list[str]:
    """Each category's stored closure is its graph's (and the graph has no cycle), reaches only accounts of its
    ledger and currency, and its balances equal the sums of those accounts' balances (which `verify` checks
    against their entries). Work bounded by the categories' graph, not by the entries (a move's freeze runs it)."""
    problems = []
    for r in await conn.fetch(Q["verify_category_closure"], tenant_id):
        if r["cycle"]:
            problems.append(f"category {r['category_id']} reaches itself (a cycle)")
        else:
            problems.append(f"category {r['category_id']}: closure {'lacks' if r['reachable'] else 'has'} account "
                            f"{r['account_id']}, which the graph {'reaches' if r['reachable'] else 'does not reach'}")
    for r in await conn.fetch(Q["verify_category_books"], tenant_id):
        problems.append(f"category {r['category_id']} ({r['ledger_id']}, {r['currency']}) reaches account "
                        f"{r['account_id']} ({r['account_ledger_id']}, {r['account_currency']})")
    for r in await conn.fetch(Q["verify_category_balances"], tenant_id):
        problems.append(f"category {r['category_id']}: balances {r['pd']}/{r['pc']}/{r['od']}/{r['oc']} differ from "
                        f"the sums of its accounts' {r['e_pd']}/{r['e_pc']}/{r['e_od']}/{r['e_oc']}")
    return problems
