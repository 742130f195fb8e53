"""Operator use cases: each one checks, writes the catalog and the cell, audits, and publishes route changes."""

from __future__ import annotations

import asyncio
import re
import time
from contextlib import asynccontextmanager

import asyncpg
import httpx
import msgspec
import redis.asyncio as redis

from cell.ledger.errors import DatabaseUnavailable, LedgerError, TenantFrozen, TenantMoved
from cell.service import tenants as cell_tenants
from cell.store import audit
from cell.store import tenants as tenant_store
from cell.store.errors import server_fault, session_lost, translate
from cell.store.migrate import migrate as migrate_cell
from cell.store.verify import verify as verify_cell
from control_plane import anchors as anchor_store
from control_plane import catalog
from control_plane.catalog import Q
from control_plane.errors import EXIT_UNAVAILABLE, EXIT_VIOLATIONS, LedgerctlError
from control_plane.settings import ControlPlaneSettings

CELL_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
TENANT_NAME_LENGTH_MAX = 255  # a display name (ledgerctl tenants list shows it)
rate_limit_per_s_max = 1_000_000


@asynccontextmanager
async def cell_connection(cell: dict):
    conn = await catalog.connect(cell["database_url"], what=f"the database of cell {cell['name']}")
    try:
        yield conn
    finally:
        await conn.close()


async def check_cell_api(api_url: str, timeout_s: float) -> str | None:
    """None when the cell answers GET /healthz with 200; otherwise why not."""
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(api_url.rstrip("/") + "/healthz")
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if response.status_code == 200 else f"GET /healthz answered {response.status_code}"


async def publish_route(settings: ControlPlaneSettings, tenant: dict) -> bool:
    """Tell the routers that a tenant's route changed. False when Redis is unreachable: the routers'
    periodic reload still picks the change up, only later."""
    if not settings.redis_url:
        return False
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    message = msgspec.json.encode({"tenant_id": tenant["id"], "cell": tenant["cell"], "epoch": tenant["epoch"]})
    try:
        await client.publish(settings.routes_channel, message)
        return True
    except (redis.RedisError, OSError):
        return False
    finally:
        await client.aclose()


def check_api_url(api_url: str) -> None:
    """A cell's API URL is an http(s) URL with a host (and a valid port): the routers send its tenants there."""
    try:
        url = httpx.URL(api_url)
        valid = url.scheme in ("http", "https") and bool(url.host) and 0 < (url.port or 80) < 65536
    except (httpx.InvalidURL, ValueError, TypeError):
        valid = False
    if valid and url.userinfo:  # the routers send none; `cells list` and errors would print it
        raise LedgerctlError("invalid_api_url", "the cell's API URL must carry no user or password "
                             "(http://host:port)")
    if not valid:
        raise LedgerctlError("invalid_api_url", f"the cell's API URL {api_url!r} is not an http:// or https:// URL "
                             "with a host")


async def add_cell(conn: asyncpg.Connection, settings: ControlPlaneSettings, name: str, api_url: str,
                   database_url: str, queue_url: str = "", *, check_api: bool = True) -> dict:
    """Register a cell: migrate its database, check that its API answers, then write the catalog."""
    if not CELL_NAME_PATTERN.match(name):
        raise LedgerctlError("invalid_cell_name", "a cell name is 1-63 characters of a-z, 0-9 and '-'")
    check_api_url(api_url)
    if await conn.fetchrow(Q["fetch_cell"], name) is not None:
        raise LedgerctlError("duplicate_cell", f"cell {name} already exists")
    applied = await _migrate_cell_database(name, database_url)
    if check_api:
        problem = await check_cell_api(api_url, settings.cell_check_timeout_s)
        if problem is not None:
            raise LedgerctlError("cell_unreachable", f"cell {name} at {api_url} is not reachable: {problem}",
                                 EXIT_UNAVAILABLE)
    async with conn.transaction():
        row = await conn.fetchrow(Q["insert_cell"], name, api_url, database_url, queue_url)
        if row is None:
            raise LedgerctlError("duplicate_cell", f"cell {name} already exists")
        await catalog.audit(conn, settings.actor, "cells.add", f"cell:{name}",
                            {"api_url": api_url, "queue_url": queue_url, "migrations": applied})
    return await catalog.fetch_cell(conn, name)


async def ensure_cell(conn: asyncpg.Connection, settings: ControlPlaneSettings, name: str, api_url: str,
                      database_url: str, queue_url: str = "") -> dict:
    """Add the cell, or bring its URLs up to date (`make run` restarts servers on new ports)."""
    existing = await conn.fetchrow(Q["fetch_cell"], name)
    if existing is None:
        return await add_cell(conn, settings, name, api_url, database_url, queue_url, check_api=False)
    if (existing["api_url"], existing["database_url"], existing["queue_url"]) != (api_url, database_url, queue_url):
        check_api_url(api_url)
        await _migrate_cell_database(name, database_url)
        async with conn.transaction():
            await conn.fetchrow(Q["update_cell_urls"], name, api_url, database_url, queue_url)
            await catalog.audit(conn, settings.actor, "cells.update", f"cell:{name}",
                                {"api_url": api_url, "queue_url": queue_url})
    return await catalog.fetch_cell(conn, name)


async def _migrate_cell_database(name: str, database_url: str) -> list[str]:
    async with cell_connection({"name": name, "database_url": database_url}) as cell_conn:
        return await migrate_cell(cell_conn)


async def show_cell(conn: asyncpg.Connection, settings: ControlPlaneSettings, name: str) -> dict:
    cell = await catalog.fetch_cell(conn, name)
    problem = await check_cell_api(cell["api_url"], settings.cell_check_timeout_s)
    cell["api"] = "ok" if problem is None else problem
    return cell


async def create_tenant(conn: asyncpg.Connection, settings: ControlPlaneSettings, tenant_id: str,
                        name: str = "", cell_name: str | None = None) -> dict:
    """Place a tenant on a cell (least-loaded active cell unless named), create it there, then route it. The
    catalog row comes first, `creating`, written while its cell is held active (a drain waits for it, then moves the
    tenant off); then the cell's row, then `active`. A failure in between leaves a tenant `tenants list` shows as
    creating, and the same command run again finishes it on that cell: never a row in a cell the catalog does not
    know, nor two homes for one id."""
    if not cell_tenants.TENANT_ID_PATTERN.match(tenant_id):
        raise LedgerctlError("invalid_tenant_id", "a tenant id is 1-63 characters of letters, digits, '_', '.', '-'")
    if len(name) > TENANT_NAME_LENGTH_MAX or not name.isprintable():
        raise LedgerctlError("invalid_tenant_name",
                             f"a tenant name is at most {TENANT_NAME_LENGTH_MAX} printable characters")
    tenant = await conn.fetchrow(Q["fetch_tenant"], tenant_id)
    if tenant is None:
        tenant = await _place_tenant(conn, settings, tenant_id, name, cell_name)
    if tenant["state"] != "creating":
        raise LedgerctlError("duplicate_tenant", f"tenant {tenant_id} already exists")
    if cell_name not in (None, tenant["cell"]) or name not in ("", tenant["name"]):
        raise LedgerctlError("duplicate_tenant", f"tenant {tenant_id} is being created on cell {tenant['cell']} "
                             f"(named {tenant['name']!r}): run `ledgerctl tenants create {tenant_id}` to finish it")
    tenant = await finish_tenant(conn, tenant_id)
    tenant["published"] = await publish_route(settings, tenant)
    return tenant


placement_attempts_max = 3  # a least-loaded cell that started draining meanwhile: pick again, this many times


async def _place_tenant(conn: asyncpg.Connection, settings: ControlPlaneSettings, tenant_id: str, name: str,
                        cell_name: str | None) -> dict:
    """The tenant's catalog row, `creating`, on a cell held active until it commits (or the row another create of
    the same id wrote first)."""
    for _ in range(placement_attempts_max):
        chosen = cell_name or await conn.fetchval(Q["least_loaded_cell"])
        if chosen is None:
            raise LedgerctlError("no_active_cell", "there is no active cell to place the tenant on")
        async with conn.transaction():
            state = await conn.fetchval(Q["lock_cell_for_placement"], chosen)
            if state is None:
                raise LedgerctlError("unknown_cell", f"no cell named {chosen}")
            if state == "active":
                row = await conn.fetchrow(Q["insert_tenant"], tenant_id, name, chosen)
                if row is None:
                    return await catalog.fetch_tenant(conn, tenant_id)
                await catalog.audit(conn, settings.actor, "tenants.create", f"tenant:{tenant_id}", {"cell": chosen})
                return dict(row)
        if cell_name is not None:
            raise LedgerctlError("cell_not_active", f"cell {chosen} is {state}: it takes no new tenants")
    raise LedgerctlError("no_active_cell", "the least-loaded cells kept leaving the active state (drained, "
                         "disabled) while the tenant was placed: run it again")


async def finish_tenant(conn: asyncpg.Connection, tenant_id: str) -> dict:
    """A tenant still `creating`: its row on its cell (idempotent), then `active`. Any other tenant as it is. Its catalog
    row is held meanwhile, as `tenants delete` holds it: the two serialise, and a tenant deleted first is not written
    on its cell (no row there that the catalog does not know)."""
    async with conn.transaction():
        row = await conn.fetchrow(Q["lock_tenant_for_change"], tenant_id)
        if row is None:
            raise LedgerctlError("tenant_deleted", f"tenant {tenant_id} was deleted (`ledgerctl tenants delete`) while "
                                 f"it was being created: nothing created; run `ledgerctl tenants create {tenant_id}` "
                                 "again to create it anew")
        tenant = dict(row)
        if tenant["state"] != "creating":
            return tenant
        cell = await catalog.fetch_cell(conn, tenant["cell"])
        try:
            async with cell_connection(cell) as cell_conn:
                await cell_tenants.create_tenant(cell_conn, tenant_id, tenant["name"])
        except LedgerctlError as error:
            raise LedgerctlError(error.code, f"{error.message}; tenant {tenant_id} stays `creating` on cell "
                                 f"{cell['name']}: run `ledgerctl tenants create {tenant_id}` again once the cell is "
                                 "back", error.exit_code) from error
        return dict(await conn.fetchrow(Q["finish_tenant"], tenant_id))


async def show_tenant(conn: asyncpg.Connection, tenant_id: str) -> dict:
    tenant = await catalog.fetch_tenant(conn, tenant_id)
    cell = await catalog.fetch_cell(conn, tenant["cell"])
    async with cell_connection(cell) as cell_conn:
        in_cell = await cell_tenants.get_tenant(cell_conn, tenant_id)
        keys = await cell_tenants.list_api_keys(cell_conn, tenant_id)
    tenant["state_in_cell"] = in_cell["state"] if in_cell else None
    tenant["api_keys_live"] = sum(1 for k in keys if k["revoked_at"] is None)
    return tenant


delete_fence_wait_ms_max = 5_000  # `tenants delete` waits this long for the tenant's writes in flight on its cell


async def delete_tenant(conn: asyncpg.Connection, settings: ControlPlaneSettings, tenant_id: str,
                        planned_state: str | None = None) -> dict:
    """Remove a tenant that holds nothing: one left `creating`, or one whose cell holds no data of it (no ledger, no
    live key, nothing of TENANT_TABLES but its row and revoked keys). Its cell's rows go first, checked and deleted
    under the exclusive fence (no write of the tenant straddles the check), then its catalog row, audited; the
    catalog row is held meanwhile. A `creating` tenant whose cell's database is unreachable (gone for good) can own
    nothing yet: it leaves the catalog anyway. A tenant with data is refused, nothing changed. A failure in between
    leaves the catalog row, which the same command run again removes. With `planned_state` (the state its plan showed),
    a tenant found in another one (a `tenants create` finished it meanwhile) is refused, nothing changed."""
    from control_plane import moves  # (moves imports this module)

    async with conn.transaction():
        row = await conn.fetchrow(Q["lock_tenant"], tenant_id)
        if row is None:
            raise LedgerctlError("unknown_tenant", f"no tenant {tenant_id}")
        tenant = dict(row)
        if planned_state not in (None, tenant["state"]):
            raise LedgerctlError("tenant_changed", f"tenant {tenant_id} is {tenant['state']} now, not {planned_state} as "
                                 "the plan showed (another command changed it meanwhile): not deleted; run `ledgerctl "
                                 f"tenants delete {tenant_id}` again for a new plan")
        if tenant["state"] == "moving" or await conn.fetchval(Q["tenant_moves"], tenant_id):
            raise LedgerctlError("tenant_has_moves", f"tenant {tenant_id} has moves on record (`ledgerctl moves list "
                                 f"--tenant {tenant_id}`): a copy of it may be on another cell; not deleted")

        async def work(cell_conn):
            async with cell_conn.transaction():
                if await cell_tenants.get_tenant(cell_conn, tenant_id) is None:
                    return {"tenants": 0, "api_keys": 0}
                await tenant_store.fence_exclusive(cell_conn, tenant_id, delete_fence_wait_ms_max)
                held = await moves.held_data(cell_conn, tenant_id)
                if held:
                    raise LedgerctlError("tenant_not_empty", f"tenant {tenant_id} holds data on cell {tenant['cell']} "
                                         f"({', '.join(held)}): a tenant with data is never deleted; nothing changed")
                return await tenant_store.delete_empty(cell_conn, tenant_id)

        try:
            cell_rows = await on_tenant_cell(conn, tenant_id, work, settings.tenant_frozen_wait_s)
        except LedgerctlError as error:
            if tenant["state"] != "creating" or error.code != "database_unreachable":
                raise
            cell_rows = (f"cell {tenant['cell']} not reached ({error.message}): a row it may hold of the tenant stays "
                         f"there (`ledgerctl verify --cell {tenant['cell']}` names it once the cell is back)")
        await conn.execute(Q["delete_tenant"], tenant_id)
        await catalog.audit(conn, settings.actor, "tenants.delete", f"tenant:{tenant_id}",
                            {"cell": tenant["cell"], "state": tenant["state"], "cell_rows": cell_rows})
    result = {**tenant, "deleted": True, "cell_rows": cell_rows}
    result["published"] = await publish_route(settings, tenant)  # routers drop it at their reload
    return result


async def set_rate_limit(conn: asyncpg.Connection, settings: ControlPlaneSettings, tenant_id: str,
                         per_s: int | None, burst: int | None) -> dict:
    """Set (or, with per_s None, clear back to the router's default) a tenant's request rate limit."""
    if per_s is not None and not 0 < per_s <= rate_limit_per_s_max:
        raise LedgerctlError("invalid_rate_limit", f"the rate limit is 1..{rate_limit_per_s_max} requests/s")
    if burst is not None and (per_s is None or not 0 < burst <= rate_limit_per_s_max):
        raise LedgerctlError("invalid_rate_limit", f"a burst needs a rate and is 1..{rate_limit_per_s_max}")
    if per_s is not None and burst is None:
        burst = per_s
    async with conn.transaction():
        row = await conn.fetchrow(Q["set_tenant_rate_limit"], tenant_id, per_s, burst)
        if row is None:  # (never there, or a `tenants delete` committed while this waited for its row)
            raise LedgerctlError("unknown_tenant", f"no tenant {tenant_id}")
        await catalog.audit(conn, settings.actor, "tenants.rate_limit", f"tenant:{tenant_id}",
                            {"per_s": per_s, "burst": burst})
    tenant = dict(row)
    tenant["published"] = await publish_route(settings, tenant)
    return tenant


async def _tenant_cell(conn: asyncpg.Connection, tenant_id: str) -> dict:
    tenant = await catalog.fetch_tenant(conn, tenant_id)
    return await catalog.fetch_cell(conn, tenant["cell"])


async def on_tenant_cell(conn: asyncpg.Connection, tenant_id: str, work, wait_s: float = 0.0):
    """`work(cell_conn)` on the tenant's cell; the cell's domain errors become LedgerctlError. A change there takes
    the tenant's write fence: while a move has the tenant frozen, it is tried again (the route read again each time:
    past the flip, the target's) for at most `wait_s` (settings.tenant_frozen_wait_s), then refused, retryable."""
    deadline = time.monotonic() + wait_s
    while True:
        cell = await _tenant_cell(conn, tenant_id)
        async with cell_connection(cell) as cell_conn:
            try:
                try:
                    return await work(cell_conn)
                except asyncpg.PostgresError as exc:
                    error = translate(exc)
                    if error is None:
                        raise
                    raise error from exc
            except (TenantFrozen, TenantMoved) as exc:
                error = exc  # a move's freeze, or a route that changed since it was read
            except DatabaseUnavailable as exc:  # a database failing under the command (nothing written): as _run's
                raise LedgerctlError(exc.code, exc.detail, EXIT_UNAVAILABLE) from exc
            except LedgerError as exc:
                raise LedgerctlError(exc.code, exc.detail) from exc
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.1)
    if isinstance(error, TenantFrozen):
        raise LedgerctlError("tenant_frozen", f"tenant {tenant_id} is frozen by a move (`ledgerctl moves list "
                             f"--tenant {tenant_id}`); nothing changed: run it again once the move ends",
                             EXIT_UNAVAILABLE) from error
    raise LedgerctlError("tenant_moved", f"cell {cell['name']} no longer serves tenant {tenant_id}, and the route "
                         "still points at it; nothing changed", EXIT_UNAVAILABLE) from error


async def create_key(conn: asyncpg.Connection, settings: ControlPlaneSettings, tenant_id: str) -> tuple[dict, str]:
    if (await catalog.fetch_tenant(conn, tenant_id))["state"] == "creating":
        raise LedgerctlError("tenant_creating", f"tenant {tenant_id} is still being created: run `ledgerctl tenants "
                             f"create {tenant_id}` to finish it first")

    async def work(cell_conn):
        # The key commits on the cell only once the audit log holds it: a catalog failing in between leaves no live
        # key whose secret was never shown and that no audit entry names.
        async with cell_conn.transaction():
            try:
                row, secret = await cell_tenants.create_api_key(cell_conn, tenant_id)
            except cell_tenants.TenantError as exc:
                raise LedgerctlError("unknown_tenant", str(exc)) from exc
            await catalog.audit(conn, settings.actor, "keys.create", f"tenant:{tenant_id}", {"key_id": str(row["id"])})
        return row, secret

    return await on_tenant_cell(conn, tenant_id, work, settings.tenant_frozen_wait_s)


async def list_keys(conn: asyncpg.Connection, tenant_id: str) -> list[dict]:
    cell = await _tenant_cell(conn, tenant_id)
    async with cell_connection(cell) as cell_conn:
        return await cell_tenants.list_api_keys(cell_conn, tenant_id)


async def find_key(conn: asyncpg.Connection, tenant_id: str, key_id: str) -> dict:
    for key in await list_keys(conn, tenant_id):
        if str(key["id"]) == key_id:
            return key
    raise LedgerctlError("unknown_key", f"no key {key_id} for tenant {tenant_id}")


async def revoke_key(conn: asyncpg.Connection, settings: ControlPlaneSettings, tenant_id: str, key_id: str) -> dict:
    """Revoke the key on its cell at once (security first), then record it in the audit log. A key revoked already
    (a first run whose audit entry failed) has only its missing entry recorded: one entry per revocation."""
    key = await find_key(conn, tenant_id, key_id)
    if key["revoked_at"] is None:
        async def work(cell_conn):
            try:
                return await cell_tenants.revoke_api_key(cell_conn, tenant_id, key_id)
            except cell_tenants.TenantError as exc:
                raise LedgerctlError("unknown_key", str(exc)) from exc

        key = await on_tenant_cell(conn, tenant_id, work, settings.tenant_frozen_wait_s)
    try:
        await catalog.audit_once(conn, settings.actor, "keys.revoke", f"tenant:{tenant_id}", {"key_id": str(key["id"])})
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        if not (session_lost(exc) or server_fault(exc)):
            raise
        raise LedgerctlError(
            "revocation_not_audited", f"key {key_id} of tenant {tenant_id} is revoked (clients using it get 401 within "
            f"seconds), but the audit log failed to record it ({type(exc).__name__}: {exc}): run `ledgerctl keys "
            f"revoke {tenant_id} {key_id}` again once the control-plane database is back, to record it",
            EXIT_UNAVAILABLE) from exc
    return key


async def verify(conn: asyncpg.Connection, tenant_id: str | None = None, cell_name: str | None = None,
                 unapplied_age_max_s: float | None = None, creating_age_max_s: float | None = None,
                 move_update_age_max_s: float | None = None) -> dict:
    """Run the cell's invariant checks, the sweeper's bound included unless unapplied_age_max_s is None or 0, and
    (unless creating_age_max_s is None or 0) find the tenants left `creating` longer, and (unless
    move_update_age_max_s is None or 0) the stalled moves of the tenant or into or off the cell; {cell: [violations]}.
    Raises with EXIT_VIOLATIONS when any."""
    from control_plane import moves  # (moves imports this module)

    if tenant_id is not None:
        cell = await _tenant_cell(conn, tenant_id)
    else:
        cell = await catalog.fetch_cell(conn, cell_name)
    async with cell_connection(cell) as cell_conn:
        violations = await verify_cell(cell_conn, tenant_id, unapplied_age_max_s=unapplied_age_max_s or None)
        if tenant_id is None:
            violations = list(violations) + await _orphans(conn, cell_conn, cell["name"])
    if creating_age_max_s:
        violations = list(violations) + [
            f"tenant {r['id']} has been `creating` on cell {cell['name']} for {r['age_s']} s (more than "
            f"{creating_age_max_s:g} s: a create that failed half-way): `ledgerctl tenants create {r['id']}` finishes it "
            f"(or `ledgerctl tenants delete {r['id']}` gives it up)"
            for r in await conn.fetch(Q["stale_creating_tenants"], cell["name"], tenant_id, creating_age_max_s)]
    if move_update_age_max_s:
        violations = list(violations) + await moves.stalled_findings(
            conn, None if tenant_id else cell["name"], tenant_id, move_update_age_max_s)
    report = {"cell": cell["name"], "tenant": tenant_id, "violations": list(violations)}
    if violations:
        raise LedgerctlError("invariants_violated", f"{len(violations)} invariant violation(s) in cell {cell['name']}",
                             EXIT_VIOLATIONS, details=report)
    return report


async def _orphans(conn: asyncpg.Connection, cell_conn: asyncpg.Connection, cell_name: str) -> list[str]:
    """The tenant rows of a cell the catalog does not know at all: no route points at them, no key can be issued."""
    on_cell = [r["id"] for r in await cell_conn.fetch(audit.Q["audit_tenants"])]
    known = {r["id"] for r in await conn.fetch(Q["known_tenants"], on_cell)}
    return [f"tenant {t} has a row on cell {cell_name} that the catalog does not know (a create that failed half-way"
            f"): `ledgerctl tenants create {t} --cell {cell_name}` adopts it" for t in on_cell if t not in known]


def _describe(finding) -> str:
    where = f"link {finding.link}" if finding.link is not None else "unlinked"
    return f"{where}{f' ({finding.covers})' if finding.covers else ''}: {finding.problem}"


async def audit_verify(conn: asyncpg.Connection, settings: ControlPlaneSettings, tenant_id: str | None,
                       cell_name: str | None, progress=None) -> dict:
    """Recompute each tenant's audit chain from its rows, check it against its anchors, and recompute its balance
    caches from entries (one tenant, one cell's, or every cell's). `progress(tenant, checked, total)`. Raises
    with EXIT_VIOLATIONS when anything is found; the report names each tenant's first broken link."""
    if tenant_id is not None:
        plan = [(await _tenant_cell(conn, tenant_id), [tenant_id])]
    else:
        cells = [await catalog.fetch_cell(conn, cell_name)] if cell_name else await catalog.list_cells(conn)
        plan = [(cell, None) for cell in cells]
    tenants, violations = [], []
    for cell, names in plan:
        async with cell_connection(cell) as cell_conn:
            if names is None:
                names = [r["id"] for r in await cell_conn.fetch(audit.Q["audit_tenants"])]
            for name in names:
                anchors = await anchor_store.read(name, conn, settings.audit_anchor_dir)
                chain = await audit.verify_chain(cell_conn, name, anchors,
                                                 progress and (lambda n, total, t=name: progress(t, n, total)))
                caches = await verify_cell(cell_conn, name)
                found = [_describe(f) for f in chain.findings] + caches
                first = chain.first_broken_link
                tenants.append({"tenant": name, "cell": cell["name"], "links": chain.links,
                                "head_seq": chain.head_seq, "head_hash": chain.head_hash,
                                "anchors_checked": len(anchors),
                                "latest_anchor": max((a.seal_seq for a in anchors), default=None),
                                "unsealed": chain.unsealed,
                                "first_broken_link": _describe(first) if first else None,
                                "findings_total": chain.findings_total + len(caches), "findings": found})
                violations += [f"{name}: {line}" for line in found]
    report = {"tenants": tenants, "findings": sum(t["findings_total"] for t in tenants)}
    if violations:
        raise LedgerctlError("audit_findings", f"{report['findings']} audit finding(s) in "
                             f"{sum(1 for t in tenants if t['findings'])} tenant(s)", EXIT_VIOLATIONS,
                             details={**report, "violations": violations})
    return report
