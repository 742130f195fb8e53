"""ledgerctl, the operator CLI: cells, tenants, API keys, rate limits, verification, the audit log."""

from __future__ import annotations

import asyncio
import datetime
import functools
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import click
import msgspec

from cell.store.errors import server_fault, session_lost
from cell.store.migrate import pending_migrations
from control_plane import catalog, moves, operations
from control_plane import webhooks as cp_webhooks
from control_plane.errors import EXIT_ERROR, EXIT_UNAVAILABLE, LedgerctlError
from control_plane.settings import ControlPlaneSettings, load_settings

FORMATS = click.Choice(["pretty", "json"])


class Context(msgspec.Struct):
    settings: ControlPlaneSettings
    format: str


def _format_option(fn):
    """--format on every command too, so that `ledgerctl tenants list --format json` works."""
    @click.option("--format", "format_", type=FORMATS, default=None, help="Output format (default: pretty).")
    @functools.wraps(fn)
    def wrapper(*args, format_: str | None, **kwargs):
        ctx = click.get_current_context()
        if format_ is not None:
            ctx.find_object(Context).format = format_
        return fn(*args, **kwargs)
    return wrapper


def _plain(value):
    if isinstance(value, (datetime.datetime, uuid.UUID)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return ",".join(_plain(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return msgspec.json.encode(value).decode()
    return "-" if value is None else str(value)


def _table(rows: list[dict], columns: list[str]) -> str:
    cells = [[_plain(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _emit(ctx: Context, data, columns: list[str] | None = None) -> None:
    if ctx.format == "json":
        click.echo(msgspec.json.format(msgspec.json.encode(data), indent=2).decode())
    elif isinstance(data, list):
        click.echo(_table(data, columns or (list(data[0]) if data else [])) if data else "(none)")
    else:
        width = max(len(k) for k in data) if data else 0
        for key, value in data.items():
            click.echo(f"{key.ljust(width)}  {_plain(value)}")


def _fail(ctx: Context, error: LedgerctlError) -> None:
    if ctx.format == "json":
        click.echo(msgspec.json.encode(error.as_problem()).decode(), err=True)
    else:
        click.echo(f"error: {error.message} [{error.code}]", err=True)
        if isinstance(error.details, dict) and error.details.get("violations"):
            for violation in error.details["violations"]:
                click.echo(f"  - {violation}", err=True)
    sys.exit(error.exit_code)


def _run(work, *, migrated: bool = True):
    """Open the control-plane database, run `work(conn, settings)`, turn LedgerctlError into an exit code."""
    ctx = click.get_current_context().find_object(Context)

    async def go():
        conn = await catalog.connect(ctx.settings.database_url)
        try:
            if migrated and await pending_migrations(conn, catalog.MIGRATIONS_DIR):
                raise LedgerctlError("catalog_not_migrated", "the control-plane database is not migrated: "
                                     "run `ledgerctl migrate`")
            return await work(conn, ctx.settings)
        finally:
            await conn.close()

    try:
        return asyncio.run(go())
    except LedgerctlError as error:
        _fail(ctx, error)
    except asyncpg.DataError as exc:
        if not isinstance(exc.__cause__, UnicodeEncodeError):
            raise  # a query argument of the wrong type: a defect, loud
        # Bytes a shell passed that are no UTF-8 (Python keeps them as surrogates): no name, id or URL holds them.
        _fail(ctx, LedgerctlError("invalid_arguments", f"an argument is not valid UTF-8: {exc.__cause__}"))
    except asyncpg.PostgresError as exc:
        if not (session_lost(exc) or server_fault(exc)):
            raise  # anything else is a defect: loud
        # A database (the control plane's, or a cell's) ended the session or failed the statement by a fault of its
        # own (a restart, a failover, its disk full): each step's work is committed or not, never half-done.
        _fail(ctx, LedgerctlError(
            "database_failed", f"a database failed under the command ({type(exc).__name__}: {exc}); what it "
            "committed stands: run it again once the database is back (a move goes on with `ledgerctl moves resume "
            "MOVE_ID`, `ledgerctl moves list --state running` names it)", EXIT_UNAVAILABLE))


def _emit_once(ctx: Context, row: dict, what: str, why: str = "") -> None:
    """A row holding a secret stored only as a hash: shown this once, and a pretty reader is told to keep it."""
    _emit(ctx, row)
    if ctx.format == "pretty":
        click.echo(f"Store {what} now{f' ({why})' if why else ''}: it cannot be shown again.", err=True)


def _confirm(ctx: Context, plan: list[str], expected: str, yes: bool) -> None:
    """Show the plan; unless --yes, the operator types `expected` back (patronictl's way)."""
    click.echo("Plan:", err=True)
    for step in plan:
        click.echo(f"  - {step}", err=True)
    if yes:
        return
    typed = click.prompt(f"Type {expected!r} to go ahead", default="", show_default=False, err=True)
    if typed.strip() != expected:
        _fail(ctx, LedgerctlError("not_confirmed", "not confirmed; nothing changed"))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--database-url", envvar="CONTROL_PLANE_DATABASE_URL", default=None,
              help="Control-plane database URL [env CONTROL_PLANE_DATABASE_URL].")
@click.option("--redis-url", envvar="CONTROL_PLANE_REDIS_URL", default=None,
              help="Redis URL route changes are published on [env CONTROL_PLANE_REDIS_URL].")
@click.option("--format", "format_", type=FORMATS, default="pretty", help="Output format.")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, redis_url: str | None, format_: str) -> None:
    """Operate the ledger's cells and tenants."""
    try:
        settings = load_settings(database_url=database_url, redis_url=redis_url)
    except msgspec.ValidationError as exc:  # a CONTROL_PLANE_ variable of the wrong type or out of its range
        _fail(Context(settings=ControlPlaneSettings(), format=format_),
              LedgerctlError("invalid_settings", f"the CONTROL_PLANE_ settings: {exc}"))
    ctx.obj = Context(settings=settings, format=format_)


@cli.command()
@_format_option
def migrate() -> None:
    """Create or upgrade the control-plane schema."""
    ctx = click.get_current_context().find_object(Context)
    applied = _run(lambda conn, s: catalog.migrate_catalog(conn), migrated=False)
    _emit(ctx, {"applied": applied})


# ---- cells -------------------------------------------------------------------------------------------------

CELL_COLUMNS = ["name", "state", "tenants", "api_url", "queue_url"]


@cli.group()
def cells() -> None:
    """Cells: each one an API, a PostgreSQL database and a queue."""


@cells.command("add")
@click.argument("name")
@click.option("--api-url", required=True, help="Base URL of the cell's API.")
@click.option("--database-url", "cell_database_url", required=True, help="The cell's PostgreSQL URL.")
@click.option("--queue-url", default="", help="The cell's SQS queue URL.")
@click.option("--no-check", is_flag=True, help="Do not require the cell's API to answer /healthz.")
@_format_option
def cells_add(name: str, api_url: str, cell_database_url: str, queue_url: str, no_check: bool) -> None:
    """Add a cell: run its migrations, check it answers, register it."""
    ctx = click.get_current_context().find_object(Context)
    cell = _run(lambda conn, s: operations.add_cell(conn, s, name, api_url, cell_database_url, queue_url,
                                                     check_api=not no_check))
    _emit(ctx, _public_cell(cell))


def _public_cell(cell: dict) -> dict:
    # The database URL may carry a password: never print it.
    return {k: v for k, v in cell.items() if k != "database_url"}


@cells.command("list")
@_format_option
def cells_list() -> None:
    """List the cells and how many tenants each holds."""
    ctx = click.get_current_context().find_object(Context)
    rows = _run(lambda conn, s: catalog.list_cells(conn))
    _emit(ctx, [_public_cell(r) for r in rows], CELL_COLUMNS)


@cells.command("show")
@click.argument("name")
@_format_option
def cells_show(name: str) -> None:
    """Show a cell, with a live check of its API."""
    ctx = click.get_current_context().find_object(Context)
    _emit(ctx, _public_cell(_run(lambda conn, s: operations.show_cell(conn, s, name))))


@cells.command("drain")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_format_option
def cells_drain(name: str, yes: bool) -> None:
    """Mark a cell draining (no new tenants) and move its tenants off, one at a time, to the least-loaded
    active cells. Resumable: run it again to go on after a stop."""
    ctx = click.get_current_context().find_object(Context)
    plan = _run(lambda conn, s: moves.plan_drain(conn, name))
    lines = [f"mark cell {name} draining: no new tenant is placed on it"]
    lines += [f"{'resume move ' + m['resume'] + ' of' if m['resume'] else 'move'} tenant {m['tenant']} "
              f"to cell {m['target']}" for m in plan["moves"]]
    lines.append("one move at a time, each with its own short write freeze; targets are re-picked (least "
                 "loaded) as each move starts")
    _confirm(ctx, lines, name, yes)

    def announce(event: dict) -> None:
        if ctx.format == "pretty":
            verb = "resuming move" if event["resumed"] else "move"
            click.echo(f"{verb} {event['move']}: tenant {event['tenant']} -> {event['target']}", err=True)

    result = _run(lambda conn, s: moves.drain_cell(conn, s, name, _Progress(ctx), announce))
    if ctx.format == "json":
        _emit(ctx, result)
        return
    for move in result["moves"]:
        _emit_move(ctx, move)
    if result["state"] == "draining":
        click.echo(f"cell {name}: draining, {len(result['moves'])} tenant(s) moved off, none left")
    else:
        click.echo(f"cell {name}: undrained ({result['state']}) meanwhile: the drain stopped, "
                   f"{len(result['moves'])} tenant(s) moved off, {result['tenants_left']} left")


@cells.command("undrain")
@click.argument("name")
@_format_option
def cells_undrain(name: str) -> None:
    """Take a draining cell back: placement puts new tenants on it again, and a drain still running stops
    after its current move. Tenants already moved off stay where they are."""
    ctx = click.get_current_context().find_object(Context)
    _emit(ctx, _public_cell(_run(lambda conn, s: moves.undrain_cell(conn, s, name))))


# ---- tenants -----------------------------------------------------------------------------------------------

TENANT_COLUMNS = ["id", "name", "cell", "state", "epoch", "rate_limit_per_s", "rate_burst"]


@cli.group()
def tenants() -> None:
    """Tenants: each lives in exactly one cell."""


@tenants.command("create")
@click.argument("tenant_id")
@click.option("--name", default="", help="A display name.")
@click.option("--cell", "cell_name", default=None, help="Place it on this cell (default: the least loaded).")
@_format_option
def tenants_create(tenant_id: str, name: str, cell_name: str | None) -> None:
    """Create a tenant on a cell and route it."""
    ctx = click.get_current_context().find_object(Context)
    tenant = _run(lambda conn, s: operations.create_tenant(conn, s, tenant_id, name, cell_name))
    _warn_unpublished(tenant)
    _emit(ctx, tenant)


def _warn_unpublished(tenant: dict) -> None:
    if not tenant.get("published"):
        click.echo("warning: the route change was not published on Redis; routers pick it up at their next "
                   "periodic reload", err=True)


@tenants.command("list")
@click.option("--cell", "cell_name", default=None, help="Only the tenants of this cell.")
@click.option("--after", default="", help="Start after this tenant id (pagination).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, None))
@_format_option
def tenants_list(cell_name: str | None, after: str, limit: int) -> None:
    """List tenants in id order."""
    ctx = click.get_current_context().find_object(Context)

    async def work(conn, settings):
        if cell_name is not None:
            await catalog.fetch_cell(conn, cell_name)
        return await catalog.list_tenants(conn, cell_name, after, min(limit, settings.tenants_per_page_max))

    _emit(ctx, _run(work), TENANT_COLUMNS)


@tenants.command("show")
@click.argument("tenant_id")
@_format_option
def tenants_show(tenant_id: str) -> None:
    """Show a tenant: its route, its state in its cell, its live keys."""
    ctx = click.get_current_context().find_object(Context)
    _emit(ctx, _run(lambda conn, s: operations.show_tenant(conn, tenant_id)))


@tenants.command("delete")
@click.argument("tenant_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_format_option
def tenants_delete(tenant_id: str, yes: bool) -> None:
    """Delete a tenant left `creating`, or one that holds no data on its cell (a tenant with data is refused)."""
    ctx = click.get_current_context().find_object(Context)
    tenant = _run(lambda conn, s: catalog.fetch_tenant(conn, tenant_id))
    _confirm(ctx, [f"delete tenant {tenant_id} ({tenant['state']}, on cell {tenant['cell']}) from the catalog",
                   f"and its row and revoked keys on cell {tenant['cell']}, only if it holds nothing else there (no "
                   "ledger, no live key, no webhook endpoint...): a tenant with data is refused"], tenant_id, yes)
    tenant = _run(lambda conn, s: operations.delete_tenant(conn, s, tenant_id, tenant["state"]))
    _warn_unpublished(tenant)
    _emit(ctx, tenant)


@tenants.command("rate-limit")
@click.argument("tenant_id")
@click.option("--per-s", type=int, default=None, help="Requests per second the router lets through.")
@click.option("--burst", type=int, default=None, help="Bucket size (default: the rate).")
@click.option("--default", "use_default", is_flag=True, help="Go back to the router's default limit.")
@_format_option
def tenants_rate_limit(tenant_id: str, per_s: int | None, burst: int | None, use_default: bool) -> None:
    """Set a tenant's request rate limit (enforced by the routers)."""
    ctx = click.get_current_context().find_object(Context)
    if (per_s is None) == (not use_default):
        _fail(ctx, LedgerctlError("invalid_rate_limit", "give either --per-s N or --default"))
    tenant = _run(lambda conn, s: operations.set_rate_limit(conn, s, tenant_id, per_s, burst))
    _warn_unpublished(tenant)
    _emit(ctx, tenant)


@tenants.command("move")
@click.argument("tenant_id")
@click.option("--to", "target_cell", required=True, help="The cell to move the tenant to.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Print the plan only.")
@_format_option
def tenants_move(tenant_id: str, target_cell: str, yes: bool, dry_run: bool) -> None:
    """Move a tenant to another cell online (resumable: `ledgerctl moves resume ID`)."""
    ctx = click.get_current_context().find_object(Context)
    plan = _run(lambda conn, s: moves.plan_move(conn, s, tenant_id, target_cell))
    if dry_run:
        _emit(ctx, plan)
        return
    lines = [f"move tenant {tenant_id} from cell {plan['source']} to cell {plan['target']}",
             f"copy {plan['rows_total']} rows (" + ", ".join(f"{t} {n}" for t, n in plan["rows"].items() if n)
             + f"), about {plan['estimate_s']} s, while the tenant keeps writing",
             "freeze its writes for a moment (the router holds them), verify, switch its route"]
    if plan["replaces_moved_out_copy"]:
        lines.insert(1, f"delete the copy cell {plan['target']} kept when the tenant moved out of it")
    _confirm(ctx, lines, tenant_id, yes)

    async def work(conn, settings):
        fresh = await moves.plan_move(conn, settings, tenant_id, target_cell)
        move = await moves.start_move(conn, settings, fresh)
        if ctx.format == "pretty":
            click.echo(f"move {move['id']} started (resume it with `ledgerctl moves resume {move['id']}`)", err=True)
        return await moves.run_move(conn, settings, move["id"], _Progress(ctx))

    _emit_move(ctx, _run(work))


class _Progress:
    """A move's progress on stderr. On a terminal (pretty output), one status line rewritten in place: the step,
    the table being copied, rows copied of the plan's total, rows/s, time in the freeze; a line per step stays
    above it. Otherwise plain lines: one per step, one per batch at most twice a second. With --format json,
    the same events as JSON lines (batches at most twice a second)."""

    def __init__(self, ctx: Context, stream=None) -> None:
        self.format = ctx.format
        self.stream = stream or sys.stderr
        self.live = ctx.format == "pretty" and self.stream.isatty()
        self.last = 0.0
        self.width = 0

    def __call__(self, event: dict) -> None:
        if event["event"] == "batch":  # the first batch of a move is always shown, then at most so often
            now = time.monotonic()
            if now - self.last < (0.1 if self.live else 0.5):
                return
            self.last = now
        if self.format == "json":
            self._write(msgspec.json.encode({"progress": event}).decode() + "\n")
        elif event["event"] == "step":
            self._line(f"step {event['step']}")
        elif event["event"] == "batch":
            text = self.describe(event)
            if self.live:
                self._write("\r" + text.ljust(self.width))
                self.width = len(text)
            else:
                self._line(text)
        elif event["event"] == "waiting":
            self._line(f"  waiting for the freeze: the last round copied {event['round_rows']:,} rows, a freeze of "
                       f"about {event['freeze_s_expected']} s (at most {event['freeze_s_max']:g} s); another round "
                       f"({event['waited_s']} s so far)")
        else:
            self._line(f"  {event['event']} (freeze {event.get('freeze_ms')} ms)")

    @staticmethod
    def describe(event: dict) -> str:
        planned, copied = event.get("rows_planned"), event.get("rows_copied")
        total = f", {copied:,} of {planned:,} rows" if planned and copied is not None else ""
        if planned and copied is not None and event["step"] == "copy":
            total += f" ({min(100.0, 100.0 * copied / planned):.1f}%)"
        rate = f", {event['rows_per_s']:,} rows/s" if event.get("rows_per_s") else ""
        frozen = f", frozen {event['freeze_ms']} ms" if event.get("freeze_ms") is not None else ""
        # The catch-up's round (the copy was the first): an operator sees whether the rounds converge.
        step = f"{event['step']} round {event['round']}" if event["step"] == "catch_up" and "round" in event \
            else event["step"]
        return (f"  {step}: {event['table']} {event['table_rows']:,} rows, {event['round_rows']:,} this "
                f"round{total}{rate}{frozen}")

    def _line(self, text: str) -> None:
        if self.live and self.width:
            self._write("\r" + " " * self.width + "\r")
            self.width = 0
        self._write(text + "\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _emit_move(ctx: Context, result: dict) -> None:
    if ctx.format == "json":
        _emit(ctx, result)
        return
    click.echo(f"move {result['id']}: tenant {result['tenant']} {result['source']} -> {result['target']}: "
               f"{result['state']} (step {result['step']})")
    for step in result["steps"]:
        click.echo(f"  {step['step']:<17} {step['ms']:>10} ms")
    copied = result["rows_copied"]
    click.echo(f"rows copied: {sum(copied.values())} (" + ", ".join(f"{t} {n}" for t, n in copied.items() if n) + ")")
    click.echo(f"catch-up rounds: {result['rounds']}, rows in the final catch-up: {result['final_catch_up_rows']}")
    click.echo(f"freeze window: {result['freeze_ms']} ms")
    v = result["verification"]
    if v is not None:
        if v.get("delta"):
            click.echo(f"verification: {'ok' if v['ok'] else 'FAILED'} ({sum(v['rows'].values())} rows, "
                       f"{v['accounts']} accounts before the freeze, {v['pre_verify_differences']} difference(s) "
                       f"left to it; in the freeze {v['accounts_checked']} account(s) and "
                       f"{v['transactions_checked']} transaction(s) touched since, rechecked)")
        else:
            click.echo(f"verification: {'ok' if v['ok'] else 'FAILED'} ({sum(v['rows'].values())} rows, "
                       f"{v['accounts']} accounts, audit-chain head {v['audit_chain_head'][:16]})")
        for problem in v["problems"]:
            click.echo(f"  - {problem}")
    post = result.get("post_verify")
    if post is not None:
        click.echo(f"target's invariants after the unfreeze: {'ok' if post['ok'] else 'VIOLATED'}")
        for problem in post["problems"]:
            click.echo(f"  - {problem}")
    if result.get("purged"):
        click.echo(f"purged on the source: {result['purged']}")
    if result.get("deleted_on_target"):
        click.echo(f"deleted on the target: {result['deleted_on_target']}")


# ---- moves -------------------------------------------------------------------------------------------------

MOVE_COLUMNS = ["id", "tenant", "source", "target", "state", "step", "freeze_ms", "created_at"]


@cli.group("moves")
def moves_group() -> None:
    """Tenant moves: a persisted, resumable state machine each."""


@moves_group.command("list")
@click.option("--state", type=click.Choice(["running", "done", "aborted", "failed"]), default=None)
@click.option("--tenant", "tenant_id", default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@_format_option
def moves_list(state: str | None, tenant_id: str | None, limit: int) -> None:
    """List moves, newest first."""
    ctx = click.get_current_context().find_object(Context)
    rows = _run(lambda conn, s: moves.list_moves(conn, state, tenant_id, limit, s.move_update_age_max_s))
    if ctx.format == "pretty":  # a move whose mover died or hangs (CONTROL_PLANE_MOVE_UPDATE_AGE_MAX_S)
        rows = [r | {"state": "running (stalled)"} if r["stalled"] else r for r in rows]
    _emit(ctx, rows, MOVE_COLUMNS)


@moves_group.command("show")
@click.argument("move_id")
@_format_option
def moves_show(move_id: str) -> None:
    """Show a move: its step, step durations, rows copied, freeze window, verification."""
    ctx = click.get_current_context().find_object(Context)

    async def work(conn, settings):
        return moves.report(await moves.fetch_move(conn, move_id))

    _emit_move(ctx, _run(work))


@moves_group.command("resume")
@click.argument("move_id")
@_format_option
def moves_resume(move_id: str) -> None:
    """Resume a running move whose mover stopped (killed, crashed) from its last saved step."""
    ctx = click.get_current_context().find_object(Context)
    _emit_move(ctx, _run(lambda conn, s: moves.run_move(conn, s, move_id, _Progress(ctx))))


@moves_group.command("abort")
@click.argument("move_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_format_option
def moves_abort(move_id: str, yes: bool) -> None:
    """Abort a move before its flip: the tenant stays on (or returns to) its source, active; the target's
    partial copy is deleted (on a cell the tenant had left, but for its tenant row, moved_out, and key hashes)."""
    ctx = click.get_current_context().find_object(Context)

    async def abortable(conn, settings):
        move = await moves.fetch_move(conn, move_id)
        moves.refuse_abort(move)
        return move, await moves.tenant_left_cell(conn, move)

    move, left = _run(abortable)
    _confirm(ctx, [f"abort move {move_id} of tenant {move['tenant_id']} at step {move['step']}",
                   f"delete its partial copy on cell {move['target_cell']}"
                   + (", but for the tenant row (moved out again) and key hashes the tenant left there" if left else
                      "")], move["tenant_id"], yes)
    _emit_move(ctx, _run(lambda conn, s: moves.abort_move(conn, s, move_id)))


@moves_group.command("purge")
@click.argument("move_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_format_option
def moves_purge(move_id: str, yes: bool) -> None:
    """Delete a finished move's source copy, in batches (the tenant row and key hashes stay, moved_out)."""
    ctx = click.get_current_context().find_object(Context)

    async def purgeable(conn, settings):
        move = await moves.fetch_move(conn, move_id)
        await moves.refuse_purge(conn, move)
        return move

    move = _run(purgeable)
    _confirm(ctx, [f"delete tenant {move['tenant_id']}'s rows from cell {move['source_cell']} "
                   f"(it lives on {move['target_cell']} since move {move_id})"], move["tenant_id"], yes)
    _emit_move(ctx, _run(lambda conn, s: moves.purge_move(conn, s, move_id)))


# ---- keys --------------------------------------------------------------------------------------------------

KEY_COLUMNS = ["id", "tenant_id", "scopes", "created_at", "revoked_at"]


@cli.group()
def keys() -> None:
    """API keys: stored only as hashes, in the tenant's cell."""


@keys.command("create")
@click.argument("tenant_id")
@_format_option
def keys_create(tenant_id: str) -> None:
    """Create an API key. The secret is shown once, now."""
    ctx = click.get_current_context().find_object(Context)
    row, secret = _run(lambda conn, s: operations.create_key(conn, s, tenant_id))
    _emit_once(ctx, {**row, "secret": secret}, "the secret")


@keys.command("list")
@click.argument("tenant_id")
@_format_option
def keys_list(tenant_id: str) -> None:
    """List a tenant's keys (never their secrets)."""
    ctx = click.get_current_context().find_object(Context)
    _emit(ctx, _run(lambda conn, s: operations.list_keys(conn, tenant_id)), KEY_COLUMNS)


@keys.command("revoke")
@click.argument("tenant_id")
@click.argument("key_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_format_option
def keys_revoke(tenant_id: str, key_id: str, yes: bool) -> None:
    """Revoke an API key: requests with it fail within seconds."""
    ctx = click.get_current_context().find_object(Context)
    key = _run(lambda conn, s: operations.find_key(conn, tenant_id, key_id))
    if key["revoked_at"] is None:  # revoked already: nothing to confirm, its audit entry recorded if it is missing
        _confirm(ctx, [f"revoke key {key_id} of tenant {tenant_id} (created {key['created_at']})",
                       "clients using it get 401 once the cells' key caches expire (seconds)"], tenant_id, yes)
    _emit(ctx, _run(lambda conn, s: operations.revoke_key(conn, s, tenant_id, key_id)))


# ---- webhooks ----------------------------------------------------------------------------------------------

ENDPOINT_COLUMNS = ["id", "url", "event_names", "active", "description", "created_at"]
DELIVERY_COLUMNS = ["id", "event_name", "entity_id", "status", "attempts", "last_status_code", "last_error",
                    "next_attempt_at", "url"]


@cli.group()
def webhooks() -> None:
    """A tenant's webhook endpoints and the deliveries of its events to them."""


@webhooks.command("add")
@click.argument("tenant_id")
@click.argument("url")
@click.option("--event", "event_names", multiple=True, help="An event name it wants (repeat; none: every event).")
@click.option("--description", default=None)
@_format_option
def webhooks_add(tenant_id: str, url: str, event_names: tuple[str, ...], description: str | None) -> None:
    """Register an endpoint (https, a public address). Its signing key is shown once, now."""
    ctx = click.get_current_context().find_object(Context)
    endpoint = _run(lambda conn, s: cp_webhooks.add(conn, s, tenant_id, url, list(event_names), description))
    _emit_once(ctx, endpoint, "the webhook_key", "receivers check X-Signature with it")


@webhooks.command("list")
@click.argument("tenant_id")
@_format_option
def webhooks_list(tenant_id: str) -> None:
    """A tenant's endpoints (never their keys)."""
    ctx = click.get_current_context().find_object(Context)
    _emit(ctx, _run(lambda conn, s: cp_webhooks.list_endpoints(conn, tenant_id)), ENDPOINT_COLUMNS)


@webhooks.command("remove")
@click.argument("tenant_id")
@click.argument("endpoint_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_format_option
def webhooks_remove(tenant_id: str, endpoint_id: str, yes: bool) -> None:
    """Remove an endpoint and its deliveries (pending ones are not attempted any more)."""
    ctx = click.get_current_context().find_object(Context)
    _confirm(ctx, [f"remove webhook endpoint {endpoint_id} of tenant {tenant_id} and its deliveries"], tenant_id, yes)
    _emit(ctx, _run(lambda conn, s: cp_webhooks.remove(conn, s, tenant_id, endpoint_id)))


@webhooks.command("rotate-key")
@click.argument("tenant_id")
@click.argument("endpoint_id")
@_format_option
def webhooks_rotate_key(tenant_id: str, endpoint_id: str) -> None:
    """A new signing key, shown once; every attempt from now on is signed with it."""
    ctx = click.get_current_context().find_object(Context)
    _emit(ctx, _run(lambda conn, s: cp_webhooks.rotate_key(conn, s, tenant_id, endpoint_id)))


@webhooks.command("deliveries")
@click.argument("tenant_id")
@click.option("--status", type=click.Choice(["pending", "succeeded", "failed"]), default=None)
@click.option("--endpoint", "endpoint_id", default=None)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@_format_option
def webhooks_deliveries(tenant_id: str, status: str | None, endpoint_id: str | None, limit: int) -> None:
    """A tenant's deliveries, oldest first: status, attempts, the last answer or error."""
    ctx = click.get_current_context().find_object(Context)
    _emit(ctx, _run(lambda conn, s: cp_webhooks.deliveries(conn, tenant_id, status, endpoint_id, limit)),
          DELIVERY_COLUMNS)


@webhooks.command("redeliver")
@click.argument("tenant_id")
@click.argument("delivery_id", required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Every failed delivery of the tenant.")
@click.option("--endpoint", "endpoint_id", default=None, help="With --failed: of this endpoint only.")
@_format_option
def webhooks_redeliver(tenant_id: str, delivery_id: str | None, all_failed: bool, endpoint_id: str | None) -> None:
    """Attempt a delivery again now (same X-Webhook-ID, a fresh retry window), or every failed one (--failed)."""
    ctx = click.get_current_context().find_object(Context)
    if (delivery_id is None) != all_failed:
        _fail(ctx, LedgerctlError("invalid_arguments", "give a DELIVERY_ID or --failed"))
    _emit(ctx, _run(lambda conn, s: cp_webhooks.redeliver(conn, s, tenant_id, delivery_id, endpoint_id)))


# ---- verify, audit -----------------------------------------------------------------------------------------

@cli.command()
@click.option("--tenant", "tenant_id", default=None, help="Check one tenant.")
@click.option("--cell", "cell_name", default=None, help="Check a whole cell.")
@click.option("--unapplied-age-max-s", type=click.FloatRange(min=0), default=None,
              help="Fail when a balance effect stayed unapplied longer (default: the sweeper's bound, "
                   "CONTROL_PLANE_UNAPPLIED_AGE_MAX_S; 0 skips the check).")
@_format_option
def verify(tenant_id: str | None, cell_name: str | None, unapplied_age_max_s: float | None) -> None:
    """Run the invariant checks, the sweeper's bound included (and, for a cell, its tenant rows the catalog does not
    know), and find tenants left `creating` past CONTROL_PLANE_TENANT_CREATING_AGE_MAX_S and running moves no mover
    has updated for CONTROL_PLANE_MOVE_UPDATE_AGE_MAX_S; exits 3 when any."""
    ctx = click.get_current_context().find_object(Context)
    if (tenant_id is None) == (cell_name is None):
        _fail(ctx, LedgerctlError("invalid_arguments", "give exactly one of --tenant or --cell"))
    _emit(ctx, _run(lambda conn, s: operations.verify(
        conn, tenant_id, cell_name,
        s.unapplied_age_max_s if unapplied_age_max_s is None else unapplied_age_max_s, s.tenant_creating_age_max_s,
        s.move_update_age_max_s)))


@cli.group(invoke_without_command=True)
@click.option("--subject", default=None, help="e.g. tenant:acme or cell:cell-1.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@_format_option
@click.pass_context
def audit(click_ctx: click.Context, subject: str | None, limit: int) -> None:
    """The operator audit log, newest first; `audit verify` checks the tenants' audit chains."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx = click_ctx.find_object(Context)
    _emit(ctx, _run(lambda conn, s: catalog.list_audit(conn, subject, limit)),
          ["id", "at", "actor", "action", "subject", "details"])


@audit.command("verify")
@click.option("--tenant", "tenant_id", default=None, help="Check one tenant (default: every tenant).")
@click.option("--cell", "cell_name", default=None, help="Check every tenant of one cell.")
@_format_option
def audit_verify(tenant_id: str | None, cell_name: str | None) -> None:
    """Recompute each tenant's audit chain from its rows, check it against its anchors outside the cell, and
    recompute every balance cache from entries; report the first broken link; exits 3 on any finding."""
    ctx = click.get_current_context().find_object(Context)
    if tenant_id is not None and cell_name is not None:
        _fail(ctx, LedgerctlError("invalid_arguments", "give at most one of --tenant or --cell"))
    report = _run(lambda conn, s: operations.audit_verify(conn, s, tenant_id, cell_name, _audit_progress(ctx)))
    if ctx.format == "json":
        _emit(ctx, report)
        return
    for t in report["tenants"]:
        click.echo(f"{t['tenant']} ({t['cell']}): {t['links']} links verified, head {t['head_seq']} "
                   f"{t['head_hash'][:16]}, {t['anchors_checked']} anchors (latest {t['latest_anchor'] or '-'}), "
                   f"{t['unsealed']} rows not sealed yet, balance caches recomputed: ok")
    click.echo(f"{len(report['tenants'])} tenant(s) verified, no findings")


def _audit_progress(ctx: Context):
    """A progress line on stderr at most twice a second, for chains that take a while (pretty output only)."""
    last = [time.monotonic()]

    def show(tenant: str, checked: int, total: int) -> None:
        now = time.monotonic()
        if ctx.format == "pretty" and now - last[0] >= 0.5:
            click.echo(f"  {tenant}: {checked}/{total} links", err=True)
            last[0] = now

    return show


def main() -> None:
    try:
        cli(prog_name=Path(sys.argv[0]).name or "ledgerctl")
    except KeyboardInterrupt:
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
