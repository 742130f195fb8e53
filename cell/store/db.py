"""The asyncpg pool: numeric balances decoded as int, no reset query on release (we leave no session state but
the acting tenant, which each acquire sets)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar

import asyncpg
import msgspec

from ledger_common.server_urls import url_refusals_redacted

# The tenant the current task acts for (cell.api.auth sets it for a request once its key is verified): every
# connection acquired in that task has `ledger.tenant` set to it, which row-level security (migration 0110)
# holds ledger_app's queries to. "" (a background task, a key lookup): ledger_app sees no tenant's rows.
ACTING_TENANT: ContextVar[str] = ContextVar("acting_tenant", default="")


class TenantConnection(asyncpg.Connection):
    """A connection that remembers the tenant its session acts for, so a connection reused by the same tenant
    pays nothing; a change costs one round trip."""

    __slots__ = ("acting_tenant",)

    async def act_for(self, tenant: str) -> None:
        if getattr(self, "acting_tenant", "") == tenant:
            return
        await self.execute("SELECT set_config('ledger.tenant', $1, false)", tenant)
        # Set inside a transaction, the setting would be undone by its rollback: then remember nothing.
        self.acting_tenant = None if self.is_in_transaction() else tenant

    def acts_for_task_tenant(self) -> bool:
        """Whether the session acts for the current task's tenant already (then acquiring it costs nothing more)."""
        return getattr(self, "acting_tenant", "") == ACTING_TENANT.get()


async def act_for_task_tenant(conn) -> None:
    await conn.act_for(ACTING_TENANT.get())


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Balances are numeric(39,0) so that they can never overflow; they are whole numbers, so int is exact.
    await conn.set_type_codec("numeric", encoder=str, decoder=int, schema="pg_catalog", format="text")
    # jsonb in its binary form (a version byte, 1, then the JSON text): an argument goes as msgspec's bytes, without
    # the text form's round trip through str (~0.7 us of ~1.4 per value; a posting sends ~6); a value read back is
    # decoded from its bytes, as cheap as from the text form's str.
    await conn.set_type_codec("jsonb", encoder=_jsonb_encode, decoder=_jsonb_decode, schema="pg_catalog",
                              format="binary")


_JSONB_VERSION = b"\x01"
_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


def _jsonb_encode(value) -> bytes:
    return _JSONB_VERSION + _json_encode(value)


def _jsonb_decode(data: bytes):
    if data[0] != 1:
        raise ValueError(f"unsupported jsonb version {data[0]}")
    return _json_decode(data[1:])  # a bytes slice: cheaper to decode from than a memoryview of a small value


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def no_reset(conn: asyncpg.Connection) -> None:
    # asyncpg's default reset costs a round trip per release (+35% end to end when skipped, PERFORMANCE.md).
    return None


# Planner settings of the API's sessions (requests' and background's) and of the workers' periodic ones (sweeper,
# sequencer, sealer, webhook deliverer): each keeps the plan its connection makes on a statement's first runs (asyncpg
# keeps a statement prepared five minutes, PostgreSQL its generic plan until the next analyze), perhaps on a new
# cell's tables analyzed while tiny, where a sequential scan, or a whole index materialized as a nested loop's inner
# side, looked free and read every row of the table at each run (GET of a transaction, the sweeper's search for stale
# accounts; tests/integration/store/test_*_reads.py). With these, every table is reached by an index condition
# whatever it grows to, as the posting routines plan (routines/README.md). Not for the verifier, whose invariants read
# whole tables (hash joins).
INDEX_PLANS = {"enable_seqscan": "off", "enable_hashjoin": "off", "enable_mergejoin": "off", "enable_material": "off"}


def session_bounds(*, idle_in_transaction_ms_max: int = 0, statement_ms_max: int = 0,
                   lock_wait_ms_max: int = 0) -> dict[str, str]:
    """Server settings that bound what one session can hold: a client stopped inside a transaction (SIGSTOP,
    a hung host) is disconnected after idle_in_transaction_ms_max, releasing its row locks; 0 leaves a bound off."""
    bounds = {"idle_in_transaction_session_timeout": idle_in_transaction_ms_max,
              "statement_timeout": statement_ms_max, "lock_timeout": lock_wait_ms_max}
    return {name: str(int(ms)) for name, ms in bounds.items() if ms}


async def create_pool(url: str, *, min_size: int, max_size: int, role: str = "",
                      server_settings: dict[str, str] | None = None, connect_timeout_s: float = 60.0,
                      idle_close_s: float = 300.0, url_setting: str = "the database URL") -> asyncpg.Pool:
    """`role`: run every pooled connection as that role (SET ROLE; migration 0003 grants `ledger_app` exactly
    what the cell needs, and no UPDATE or DELETE on entries or versions). Empty: the login role as it is.
    `server_settings`: extra session settings (session_bounds). Every acquire sets the session's `ledger.tenant` to
    ACTING_TENANT's (a round trip only when it changes): ledger_app sees that tenant's rows only (0110).
    `idle_close_s`: a connection above min_size idle that long is closed (asyncpg's timer, armed on every release);
    0: never, unless close_idle runs beside the pool. `url_setting`: the URL's setting, as a malformed URL is reported
    (ledger_common.server_urls: never the URL itself)."""

    async def init(conn: asyncpg.Connection) -> None:
        if role:
            await conn.execute(f"SET ROLE {quote_ident(role)}")
        await _init_connection(conn)

    with url_refusals_redacted(url_setting):
        return await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, init=init, setup=act_for_task_tenant, reset=no_reset,
            connection_class=TenantConnection, max_inactive_connection_lifetime=idle_close_s,
            server_settings={"application_name": "cellledger", "jit": "off", **(server_settings or {})},
            timeout=connect_timeout_s,
        )


async def close_idle(pool: asyncpg.Pool, idle_s: float) -> None:
    """Runs until cancelled: every idle_s, closes the free connections above the pool's min size that have not been
    released since the previous pass (idle between idle_s and twice that), as asyncpg's idle timer does, for one
    timer a pass instead of one armed and cancelled on every release (~2.7 us of a ~7.6 us CellContext.run). For a
    pool created with idle_close_s=0. asyncpg 0.32's internals (requirements.lock)."""
    seen: dict[int, tuple[asyncpg.Connection, int]] = {}  # free connections at the previous pass: their release counts
    while True:
        await asyncio.sleep(idle_s)
        previous, seen = seen, {}
        for holder in list(pool._queue._queue):  # the free holders
            con = holder._con
            if con is None or con.is_closed():
                continue
            released = con._pool_release_ctr
            if previous.get(id(con)) == (con, released) and pool.get_size() > pool.get_min_size():
                con.terminate()  # idle and not in use: as asyncpg's timer closes it
            else:
                seen[id(con)] = (con, released)


@contextlib.asynccontextmanager
async def listening(pool: asyncpg.Pool, channel: str, callback: Callable) -> AsyncIterator[None]:
    """A pooled connection listening on `channel` for the block, and only listening (the block works on other
    connections of the pool: a session PostgreSQL ends stops no work), its listener removed at the end. When
    PostgreSQL ended the session meanwhile (a restart, a terminated backend), asyncpg took the connection back as it
    closed: there is nothing to remove, and what the block raised (or its result) stands, not the detached proxy's
    InterfaceError."""
    async with pool.acquire() as conn:
        await conn.add_listener(channel, callback)
        try:
            yield
        finally:
            try:
                await conn.remove_listener(channel, callback)
            except asyncpg.InterfaceError:  # "connection has been released back to the pool": the session ended
                pass
