"""Audit anchors outside the cell: the workers publish each tenant's audit-chain head to the control plane's
catalog and/or a write-once directory; `ledgerctl audit verify` reads them back to check the cell's chain."""

from __future__ import annotations

import os
import time
import urllib.parse
from pathlib import Path

import asyncpg
import msgspec

from cell.store.audit import Anchor
from control_plane.catalog import Q


class _AnchorFile(msgspec.Struct, frozen=True):
    tenant: str
    seal_seq: int
    hash: str
    cell: str
    published_at: float


async def publish_to_catalog(conn: asyncpg.Connection, cell: str, heads: list[dict]) -> None:
    """Insert the heads; a position already anchored keeps its first hash (write-once)."""
    if heads:
        await conn.execute(Q["insert_anchors"], [h["tenant_id"] for h in heads], [h["seal_seq"] for h in heads],
                           [h["hash"] for h in heads], [cell] * len(heads))


def _tenant_dir(directory: str, tenant_id: str) -> Path:
    return Path(directory) / urllib.parse.quote(tenant_id, safe="")


def publish_to_directory(directory: str, cell: str, heads: list[dict]) -> int:
    """One file per anchor, <dir>/<tenant>/<seal_seq>.json, created whole (a hard link of a finished temporary
    file: never half-written) and never replaced; read-only. Returns how many were new."""
    written = 0
    for head in heads:
        folder = _tenant_dir(directory, head["tenant_id"])
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{head['seal_seq']:020d}.json"
        if final.exists():
            continue
        body = msgspec.json.encode(_AnchorFile(head["tenant_id"], head["seal_seq"], head["hash"].hex(), cell,
                                               time.time()))
        temporary = folder / f".{final.name}.{os.getpid()}.tmp"
        temporary.write_bytes(body)
        os.chmod(temporary, 0o444)
        try:
            os.link(temporary, final)
            written += 1
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
    return written


async def read(tenant_id: str, catalog_conn: asyncpg.Connection | None, directory: str = "") -> list[Anchor]:
    """Every anchor of the tenant, from the catalog and the directory (when given)."""
    anchors = []
    if catalog_conn is not None:
        anchors += [Anchor(r["seal_seq"], bytes(r["hash"]), f"the control plane (from {r['cell']})")
                    for r in await catalog_conn.fetch(Q["list_anchors"], tenant_id)]
    if directory:
        folder = _tenant_dir(directory, tenant_id)
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            anchor = msgspec.json.decode(path.read_bytes(), type=_AnchorFile)
            anchors.append(Anchor(anchor.seal_seq, bytes.fromhex(anchor.hash), f"{path}"))
    return anchors
