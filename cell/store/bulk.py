"""Bulk requests' and results' SQL (sql/bulk.sql): taken, claimed by a worker, results written, completed."""

from __future__ import annotations

import uuid

import asyncpg

from cell.store.filters import Where
from cell.store.queries import Q


async def insert_request(conn, request_id: uuid.UUID, tenant_id: str, *, action_type: str, resource_type: str,
                         metadata: dict, resources: list[dict]) -> asyncpg.Record:
    return await conn.fetchrow(Q["insert_bulk_request"], request_id, tenant_id, action_type, resource_type, metadata,
                               resources, len(resources))


async def lock_and_count_open(conn, tenant_id: str, most: int) -> int:
    """The tenant's requests not completed (at most `most`), counted once its creations in flight have committed (the
    lock is held to the end of the caller's transaction)."""
    await conn.execute(Q["lock_open_bulk_requests"], tenant_id)
    return await conn.fetchval(Q["count_open_bulk_requests"], tenant_id, most)


async def fetch_request(conn, tenant_id: str, request_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["fetch_bulk_request"], tenant_id, request_id)


async def list_requests(conn, tenant_id: str, *, after_seq: int, limit: int, status: str | None,
                        action_type: str | None, resource_type: str | None, metadata: dict | None) -> list:
    return await conn.fetch(Q["list_bulk_requests"], tenant_id, after_seq, status, action_type, resource_type,
                            metadata, limit)


NEW_REQUEST_CHANNEL = "ledger_bulk_requests"  # notified by insert_bulk_request when its transaction commits


async def claim_request(conn, lease_s: float) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["claim_bulk_request"], float(lease_s))


async def hold_request(conn, request_id: uuid.UUID, lease_token: uuid.UUID) -> bool:
    """Inside a transaction that writes results: the request held (FOR SHARE) while the claim is still this
    token's; False when another worker took it over or it is completed."""
    return await conn.fetchval(Q["hold_bulk_request"], request_id, lease_token) is not None


async def renew_lease(conn, request_id: uuid.UUID, lease_token: uuid.UUID, lease_s: float) -> bool:
    return await conn.fetchval(Q["renew_bulk_lease"], request_id, lease_token, float(lease_s)) is not None


async def done_indexes(conn, request_id: uuid.UUID, indexes: list[int] | None = None) -> set[int]:
    if indexes is None:
        return {r["resource_index"] for r in await conn.fetch(Q["all_bulk_result_indexes"], request_id)}
    return {r["resource_index"] for r in await conn.fetch(Q["bulk_result_indexes"], request_id, indexes)}


async def insert_results(conn, tenant_id: str, request_id: uuid.UUID, results: list[tuple]) -> None:
    """results: (resource_index, entity_type, entity_id, entity, status, request_params)."""
    await conn.executemany(Q["insert_bulk_result"], [
        (uuid.uuid4(), tenant_id, request_id, index, entity_type, entity_id, entity, status, params)
        for index, entity_type, entity_id, entity, status, params in results])


async def complete(conn, request_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["complete_bulk_request"], request_id)


async def fetch_result(conn, tenant_id: str, result_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["fetch_bulk_result"], tenant_id, result_id)


async def list_results(conn, tenant_id: str, *, after_seq: int, limit: int, request_id: uuid.UUID | None,
                       entity_type: str | None, status: str | None, entity_id: uuid.UUID | None) -> list:
    """A page of results in seq order; a request's by its own index (bulk_results_request): as `$n IS NULL OR
    request_id = $n`, a generic plan could only walk the tenant's results for them."""
    w = Where(tenant_id)
    w.add("seq > {}", after_seq)
    for column, value in (("request_id", request_id), ("entity_type", entity_type), ("status", status),
                          ("entity_id", entity_id)):
        if value is not None:
            w.add(f"{column} = {{}}", value)
    limit_ref = w.bind(limit)
    return await conn.fetch(f"SELECT * FROM bulk_results WHERE tenant_id = $1{w.sql()} ORDER BY seq LIMIT {limit_ref}",
                            *w.args)


async def resources_of_keys(conn, tenant_id: str, keys: list[str]) -> dict[str, tuple[uuid.UUID, bytes]]:
    """The resource each (claimed) idempotency key names, and the hash of the request that claimed it."""
    return {r["key"]: (r["resource_id"], r["request_hash"])
            for r in await conn.fetch(Q["resources_of_keys"], tenant_id, keys)} if keys else {}


async def claim_keys(conn, tenant_id: str, keys: list[tuple[str, bytes, uuid.UUID]]) -> int:
    """(key, request hash, resource id) of postings written without their own claim; how many were claimed (a key
    claimed already is not)."""
    if not keys:
        return 0
    return len(await conn.fetch(Q["claim_bulk_keys"], tenant_id, [k for k, _, _ in keys], [h for _, h, _ in keys],
                                [r for _, _, r in keys]))


GIVEN_UP_HASH = b"\x00" * 32  # the hash of no request (a request's is a SHA-256 of what it sent)


async def take_keys(conn, tenant_id: str, request_id: uuid.UUID, keys: list[str]) -> None:
    """A given-up request's keys of resources not made: taken, so that none is made later (a key claimed already,
    or in flight, is left as it is)."""
    if keys:
        await conn.execute(Q["take_bulk_keys"], tenant_id, keys, request_id, GIVEN_UP_HASH)


async def transaction_time(conn) -> object:
    """now(): the time the rows of this database transaction carry (ledger_post's created_at)."""
    return await conn.fetchval(Q["transaction_time"])
