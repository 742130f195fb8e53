"""The audit chain (migration 0080): what a link covers and how it hashes, the sealer, the chain heads, and the
chain's verification from the rows (used by the workers, the mover and `ledgerctl audit verify`)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable

import asyncpg
import msgspec

from cell.store.queries import Q

GENESIS = bytes(32)  # the hash before a tenant's first link
SEAL_BATCH_MAX_DEFAULT = 5000  # covered rows per sealer transaction
VERIFY_PAGE_ROWS = 2000  # links read (and their rows recomputed) per round trip when verifying
FINDINGS_MAX = 100  # a verification stops listing after this many (it still counts them)
_TXID_MAX = 2**63 - 1
_LINK_COLUMNS = ["tenant_id", "seal_seq", "kind", "ref_id", "ref_version", "content_hash", "hash"]

Progress = Callable[[int, int], None]  # (links checked, links in the chain)


# ---- what a link covers, and its hash ---------------------------------------------------------------------

def _canonical(value) -> bytes:
    """Sorted-key JSON; msgspec writes UUIDs as text, datetimes as RFC 3339 (UTC, microseconds) and bytes as
    base64, all in C: sealing costs microseconds per row."""
    return msgspec.json.encode(value, order="sorted")


def _json(text: str | None):
    return None if text is None else msgspec.json.decode(text)


def version_content(v, entries: Iterable) -> bytes:
    """A transaction version as sealed: the stored version (snapshot and per-transaction hashes included) and
    every entry written with it (version 1's, and a pending transaction's entries replaced: that version's, 0206)."""
    rows = [[e["id"], e["tenant_id"], e["ledger_account_id"], e["direction"], e["amount"], e["effective_at"],
             e["created_at"], _json(e["metadata"])] for e in sorted(entries, key=lambda e: e["id"])]
    return _canonical(["version", v["tenant_id"], v["transaction_id"], v["version"], _json(v["snapshot"]),
                       v["prev_hash"], v["hash"], v["created_at"], rows])


def account_content(a) -> bytes:
    """An account as sealed: every field that says what it is (its balances are caches: recomputed instead). The
    fields of 0203 (external and ledgerable ids) follow only when one is set, and the time it was discarded (0204)
    only when it was: an account sealed before them, or without them, keeps the content it was sealed with."""
    later = [a["external_id"], a["ledgerable_type"], a["ledgerable_id"]]
    discarded = [a["discarded_at"]] if a["discarded_at"] is not None else []
    return _canonical(["account", a["tenant_id"], a["id"], a["ledger_id"], a["name"], a["description"],
                       a["normal_balance"], a["currency"], a["currency_exponent"], _json(a["metadata"]),
                       a["sync_only"], a["created_at"], a["updated_at"],
                       *(later if any(later) or discarded else []), *discarded])


def link_hash(prev: bytes, tenant_id: str, seal_seq: int, kind: str, ref_id: uuid.UUID, ref_version: int | None,
              content_hash: bytes) -> bytes:
    """sha256(previous link's hash || the link's canonical JSON): no transaction id, no time."""
    link = [tenant_id, seal_seq, kind, ref_id, ref_version, content_hash]
    return hashlib.sha256(bytes(prev) + _canonical(link)).digest()


def _covers(kind: str, ref_id, ref_version) -> str:
    return f"transaction {ref_id} version {ref_version}" if kind == "version" else f"account {ref_id}"


# ---- loading the covered rows -----------------------------------------------------------------------------

async def _version_contents(conn: asyncpg.Connection, keys: list[tuple[uuid.UUID, int]]) -> dict:
    """{(transaction id, version): content} of the versions that exist among `keys`."""
    if not keys:
        return {}
    return await _contents_of(conn, await conn.fetch(Q["audit_version_rows"], [k[0] for k in keys],
                                                     [k[1] for k in keys]))


async def _contents_of(conn: asyncpg.Connection, versions: list) -> dict:
    """{(transaction id, version): content} of these version rows (their entries loaded for version 1)."""
    entries: dict[tuple[uuid.UUID, int], list] = {}
    if versions:
        for e in await conn.fetch(Q["audit_entry_rows"], [v["transaction_id"] for v in versions],
                                  [v["version"] for v in versions]):
            entries.setdefault((e["transaction_id"], e["version"]), []).append(e)
    return {(v["transaction_id"], v["version"]):
            version_content(v, entries.get((v["transaction_id"], v["version"]), [])) for v in versions}


async def _account_contents(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> dict:
    if not ids:
        return {}
    return {a["id"]: account_content(a) for a in await conn.fetch(Q["audit_account_rows"], ids)}


def _sha(content: bytes) -> bytes:
    return hashlib.sha256(content).digest()


# ---- sealing ----------------------------------------------------------------------------------------------

async def _link(conn: asyncpg.Connection, versions: list, accounts: list) -> int:
    """Append links for these candidate rows, in (txid, kind, seq) order per tenant; an account whose content
    equals its last link's is skipped (touched, but nothing covered changed). Returns the links written."""
    items = sorted([(r["txid"], 0, r["seq"], "version", r) for r in versions] +
                   [(r["txid"], 1, r["seq"], "account", r) for r in accounts], key=lambda i: i[:3])
    if not items:
        return 0
    contents = await _contents_of(conn, versions)
    account_ids = [r["id"] for r in accounts]
    contents.update(await _account_contents(conn, account_ids))
    latest = {r["ref_id"]: bytes(r["content_hash"])
              for r in await conn.fetch(Q["audit_latest_account_links"], account_ids)} if account_ids else {}
    tenants = sorted({i[4]["tenant_id"] for i in items})
    heads = {r["tenant_id"]: (r["seal_seq"], bytes(r["hash"])) for r in await conn.fetch(Q["audit_heads"], tenants)}
    records = []
    for _, _, _, kind, r in items:
        if kind == "version":
            ref_id, ref_version = r["transaction_id"], r["version"]
            content = contents[(ref_id, ref_version)]
        else:
            ref_id, ref_version = r["id"], None
            content = contents.get(ref_id)
            if content is None or latest.get(ref_id) == _sha(content):
                continue
        content_hash = _sha(content)
        seq, prev = heads.get(r["tenant_id"], (0, GENESIS))
        digest = link_hash(prev, r["tenant_id"], seq + 1, kind, ref_id, ref_version, content_hash)
        heads[r["tenant_id"]] = (seq + 1, digest)
        if kind == "account":
            latest[ref_id] = content_hash
        records.append((r["tenant_id"], seq + 1, kind, ref_id, ref_version, content_hash, digest))
    if records:
        await conn.copy_records_to_table("audit_links", records=records, columns=_LINK_COLUMNS)
    return len(records)


async def caught_up(conn: asyncpg.Connection) -> bool:
    """One statement, no transaction or lock: True when a pass would find nothing to seal. Nothing below the horizon
    can be written any more, so this stays true until a later transaction writes; skipping on it is always safe."""
    horizon, done, written = await conn.fetchrow(Q["audit_horizon_and_done"])
    return horizon <= done or not written


async def seal(conn: asyncpg.Connection, batch_max: int = SEAL_BATCH_MAX_DEFAULT) -> int:
    """One sealer pass: links the covered rows of transactions that ended since the last pass (below the
    horizon), at most about batch_max of them; returns how many links it wrote (0 also when another sealer
    holds the lock). Never called by a posting; one sealer at a time per cell."""
    return (await _pass(conn, batch_max))[0]


async def _pass(conn: asyncpg.Connection, batch_max: int) -> tuple[int, bool]:
    """seal's pass: (links written, whether it reached its horizon: False when its batch cut it short)."""
    async with conn.transaction(isolation="read_committed"):
        if not await conn.fetchval(Q["audit_lock_try"]):
            return 0, True
        horizon, done, written = await conn.fetchrow(Q["audit_horizon_and_done"])
        if horizon <= done or not written:
            return 0, True  # the watermark stays: nothing to link (an idle pass writes nothing)
        await conn.execute(Q["audit_custom_plans"])
        bound = horizon
        await conn.execute(Q["audit_read_in_order"])
        versions = await conn.fetch(Q["audit_unsealed_versions"], done, horizon, None, batch_max)
        if len(versions) >= batch_max:
            # The batch ends before its last transaction (which may have more rows), unless that is its only one.
            bound = versions[-1]["txid"]
            versions = [v for v in versions if v["txid"] < bound]
            if not versions:
                versions = await conn.fetch(Q["audit_unsealed_versions"], bound, bound + 1, None, None)
                bound += 1
        await conn.execute(Q["audit_read_as_planned"])
        accounts = await conn.fetch(Q["audit_changed_accounts"], done, bound, None)
        written = await _link(conn, versions, accounts)
        await conn.execute(Q["audit_set_done_txid"], bound)
    return written, bound == horizon


async def seal_until_caught_up(conn: asyncpg.Connection, batch_max: int = SEAL_BATCH_MAX_DEFAULT,
                               passes_max: int = 100) -> int:
    """Sealer passes until one reaches the horizon it read (the tail below it is sealed), at most passes_max. A pass
    its batch cut short, which writes a little less than a batch (it ends before its last transaction), is followed
    by another: stopping there sealed at most a batch a call, behind a cell posting more versions than that a second."""
    total = 0
    for _ in range(passes_max):
        written, reached = await _pass(conn, batch_max)
        total += written
        if reached:
            break
    return total


async def seal_tenant(conn: asyncpg.Connection, tenant_id: str) -> int:
    """Link every covered row of one tenant not linked yet, horizon or not: only for a tenant no transaction
    can write any more (inside the move's freeze, which waited out its writers). Runs in the caller's
    transaction, after any sealer pass in flight."""
    await conn.fetchval(Q["audit_lock"])
    done = await conn.fetchval(Q["audit_done_txid"])
    versions = await conn.fetch(Q["audit_unsealed_versions"], done, _TXID_MAX, tenant_id, None)
    accounts = await conn.fetch(Q["audit_changed_accounts"], done, _TXID_MAX, tenant_id)
    return await _link(conn, versions, accounts)


async def heads(conn: asyncpg.Connection, tenants: list[str] | None = None) -> list[dict]:
    """[{tenant_id, seal_seq, hash}] of each tenant's chain (tenants without a link: absent)."""
    return [{"tenant_id": r["tenant_id"], "seal_seq": r["seal_seq"], "hash": bytes(r["hash"])}
            for r in await conn.fetch(Q["audit_heads"], tenants)]


async def unsealed_age_s(conn: asyncpg.Connection) -> float:
    """How old the oldest version not sealed yet is (0: none): the unsealed tail."""
    return await conn.fetchval(Q["audit_unsealed_age"])


# ---- verification -----------------------------------------------------------------------------------------

class Finding(msgspec.Struct, frozen=True):
    problem: str
    link: int | None = None  # the link's seal_seq, when the finding is about one
    covers: str | None = None  # what that link (or the row) covers


class Anchor(msgspec.Struct, frozen=True):
    seal_seq: int
    hash: bytes
    where: str  # which store published it (catalog, a directory)


class ChainReport(msgspec.Struct):
    tenant: str
    links: int
    head_seq: int
    head_hash: str
    anchors_checked: int
    unsealed: int
    findings: list[Finding]
    findings_total: int

    @property
    def first_broken_link(self) -> Finding | None:
        linked = [f for f in self.findings if f.link is not None]
        return min(linked, key=lambda f: f.link) if linked else None


class _Findings:
    def __init__(self) -> None:
        self.items: list[Finding] = []
        self.total = 0

    def add(self, problem: str, link: int | None = None, covers: str | None = None) -> None:
        self.total += 1
        if len(self.items) < FINDINGS_MAX:
            self.items.append(Finding(problem, link, covers))


async def verify_chain(conn: asyncpg.Connection, tenant_id: str, anchors: Iterable[Anchor] = (),
                       progress: Progress | None = None) -> ChainReport:
    """Recompute the tenant's chain from its rows: every link's hash from the one before, every covered row's
    content against its link (accounts: the last link of each), every row below the sealer's watermark
    covered, and every anchor on the chain. Read-only, one snapshot."""
    found = _Findings()
    anchored: dict[int, list[Anchor]] = {}
    for anchor in anchors:
        anchored.setdefault(anchor.seal_seq, []).append(anchor)
    at_anchor: dict[int, bytes] = {}
    latest_account: dict[uuid.UUID, tuple[int, bytes]] = {}
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        done = await conn.fetchval(Q["audit_done_txid"])
        total = await conn.fetchval(Q["audit_link_count"], tenant_id)
        prev, expected, checked, after = GENESIS, 1, 0, 0
        while True:
            page = await conn.fetch(Q["audit_links_page"], tenant_id, after, VERIFY_PAGE_ROWS)
            if not page:
                break
            for link in page:
                covers = _covers(link["kind"], link["ref_id"], link["ref_version"])
                if link["seal_seq"] != expected:
                    found.add(f"links {expected}..{link['seal_seq'] - 1} are missing", expected)
                digest = link_hash(prev, tenant_id, link["seal_seq"], link["kind"], link["ref_id"],
                                   link["ref_version"], bytes(link["content_hash"]))
                if digest != bytes(link["hash"]):
                    found.add("the link's hash does not follow from the link before it (the chain was edited)",
                              link["seal_seq"], covers)
                prev, expected = bytes(link["hash"]), link["seal_seq"] + 1
                if link["seal_seq"] in anchored:
                    at_anchor[link["seal_seq"]] = prev
                if link["kind"] == "account":
                    latest_account[link["ref_id"]] = (link["seal_seq"], bytes(link["content_hash"]))
            await _check_versions(conn, [l for l in page if l["kind"] == "version"], found)
            checked += len(page)
            after = page[-1]["seal_seq"]
            if progress:
                progress(checked, total)
        await _check_accounts(conn, tenant_id, done, latest_account, found)
        for r in await conn.fetch(Q["audit_unlinked_versions"], tenant_id, done):
            found.add("sealed history has no link for this version (written behind the chain, or its link removed)",
                      None, _covers("version", r["transaction_id"], r["version"]))
        for r in await conn.fetch(Q["audit_unlinked_entries"], tenant_id, done):
            found.add(f"entry {r['id']} is covered by no link (its transaction's first version is not sealed)",
                      None, f"transaction {r['transaction_id']}")
        for seq, published in sorted(anchored.items()):
            for anchor in published:
                if seq not in at_anchor:
                    found.add(f"anchored in {anchor.where} with hash {anchor.hash.hex()[:16]}, but the cell's chain "
                              f"ends at link {after} (its tail was removed or the chain replaced)", seq)
                elif at_anchor[seq] != anchor.hash:
                    found.add(f"differs from its anchor in {anchor.where} (the chain was rewritten)", seq)
        unsealed = await conn.fetchval(Q["audit_unsealed_count"], tenant_id, done)
    return ChainReport(tenant=tenant_id, links=checked, head_seq=after, head_hash=prev.hex(),
                       anchors_checked=sum(map(len, anchored.values())), unsealed=unsealed, findings=found.items,
                       findings_total=found.total)


async def _check_versions(conn: asyncpg.Connection, links: list, found: _Findings) -> None:
    contents = await _version_contents(conn, [(l["ref_id"], l["ref_version"]) for l in links])
    for link in links:
        covers = _covers("version", link["ref_id"], link["ref_version"])
        content = contents.get((link["ref_id"], link["ref_version"]))
        if content is None:
            found.add("the version this link covers is gone", link["seal_seq"], covers)
        elif _sha(content) != bytes(link["content_hash"]):
            found.add("the version or its entries changed since it was sealed", link["seal_seq"], covers)


async def _check_accounts(conn: asyncpg.Connection, tenant_id: str, done: int,
                          latest: dict[uuid.UUID, tuple[int, bytes]], found: _Findings) -> None:
    accounts = {r["id"]: r["txid"] for r in await conn.fetch(Q["audit_tenant_accounts"], tenant_id)}
    for account_id, (seq, _) in latest.items():
        if account_id not in accounts:
            found.add("the account this link covers is gone", seq, _covers("account", account_id, None))
    sealed = [a for a, txid in accounts.items() if txid < done]
    for start in range(0, len(sealed), VERIFY_PAGE_ROWS):
        ids = sealed[start:start + VERIFY_PAGE_ROWS]
        contents = await _account_contents(conn, ids)
        for account_id in ids:
            if account_id not in latest:
                found.add("sealed history has no link for this account", None, _covers("account", account_id, None))
            elif _sha(contents[account_id]) != latest[account_id][1]:
                found.add("the account changed since its last link (unsealed, below the sealer's watermark)",
                          latest[account_id][0], _covers("account", account_id, None))
