"""HTTP Basic auth: username = tenant id, password = API key (verified through the key cache of cell.service)."""

from __future__ import annotations

import asyncpg

from cell.service.tenants import NOT_SERVED, hash_secret
from cell.store.db import ACTING_TENANT
from ledger_common.basic_auth import KEY_CHECKED_PREFIX, UNAUTHORIZED_BODY, WWW_AUTHENTICATE, parse_basic
from ledger_common.problems import problem_body

CREDENTIALS_REMEMBERED_MAX = 10_000
_credentials: dict[bytes, tuple[str, bytes]] = {}  # Authorization header -> credentials(header)
_MOVED = problem_body(421, "tenant_moved", "this cell does not serve the tenant")
_UNAVAILABLE = problem_body(503, "database_unavailable", "the database is unreachable; retry shortly")


class AuthMiddleware:
    """ASGI middleware guarding /api/: sets scope['state']['tenant_id'] (and the acting tenant of the database
    connections, cell.store.db.ACTING_TENANT) or answers 401 / 421 itself."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(KEY_CHECKED_PREFIX):
            await self.app(scope, receive, send)
            return
        tenant_id = await verified_tenant(scope, send)
        if tenant_id is None:
            return
        acting = ACTING_TENANT.set(tenant_id)  # every connection this request takes acts for its tenant (0110)
        try:
            await self.app(scope, receive, send)
        finally:
            ACTING_TENANT.reset(acting)


def remembered_tenant(scope, ctx) -> str | None:
    """verified_tenant's answer without a coroutine when the request's key is remembered (ctx.keys) and its tenant
    served here: the tenant, set as scope['state']['tenant_id']. None for anything else (verified_tenant decides)."""
    creds = credentials(_authorization(scope))
    return _admitted(scope, creds, creds and ctx.keys.cached(creds[1]))


def _admitted(scope, creds, found) -> str | None:
    """The tenant the key `found` for `creds` admits here (its own tenant's, served here: NOT_SERVED), set as
    scope['state']['tenant_id']; None when it admits none."""
    if not found or found[0] != creds[0] or found[1] in NOT_SERVED:
        return None
    scope.setdefault("state", {})["tenant_id"] = found[0]
    return found[0]


def _authorization(scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value
    return None


async def verified_tenant(scope, send) -> str | None:
    """The tenant whose key the request's credentials are, set as scope['state']['tenant_id']; None when it was
    answered here (401, 421 or 503). The caller sets ACTING_TENANT for what it runs on the tenant's behalf."""
    creds = credentials(_authorization(scope))
    ctx = scope["app"].state["ctx"]  # subscript: the attribute is a failed lookup first (~2 us)
    try:
        found = None
        if creds:  # a remembered key without a coroutine (every request but the first of a key per ttl)
            found = ctx.keys.cached(creds[1]) or await ctx.keys.lookup_digest(ctx.pool, creds[1])
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        # A key not in the cache and no database to check it against: not a 500, nor a 401.
        await _send(send, 503, _UNAVAILABLE, [(b"retry-after", b"1")])
        return None
    tenant = _admitted(scope, creds, found)
    if tenant is None:
        if found is not None and found[0] == creds[0]:  # the tenant's own key, the tenant not served here
            await _send(send, 421, _MOVED, [])
        else:
            await _send(send, 401, UNAUTHORIZED_BODY, [(b"www-authenticate", WWW_AUTHENTICATE)])
    return tenant


def credentials(header: bytes | None) -> tuple[str, bytes] | None:
    """(tenant id, hash_secret of the key) of an Authorization header, None unless it is Basic with both. Remembered
    by the header's bytes (at most CREDENTIALS_REMEMBERED_MAX headers, each at most basic_auth.CREDENTIALS_LENGTH_MAX
    bytes long: a longer one is no credentials): a client sends the same one on every request,
    and decoding and hashing it again costs more than the rest of the key check."""
    if header is None:
        return None
    found = _credentials.get(header)
    if found is None:
        creds = parse_basic(header)
        if creds is None:
            return None
        if len(_credentials) >= CREDENTIALS_REMEMBERED_MAX:
            _credentials.clear()
        found = _credentials[header] = (creds[0], hash_secret(creds[1]))
    return found


async def _send(send, status: int, body: bytes, headers: list) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
