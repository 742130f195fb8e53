"""Schema and routines: numbered plain-SQL migrations, each applied once, then the routines (CREATE OR REPLACE
code), each re-applied when its text changes, unless the database's are newer; all under one advisory lock (safe at
start-up).

Which routines are newer: the database's when it has a migration the code does not know, or a routines generation
(routines/generations.txt, recorded in schema_routines_generation, 0222) higher than the code's. Then the code writes
none of its routines and reports none pending (an old process while an upgrade rolls out, or a rollback: a routine
keeps its old calls working). A lower generation in the database: the code applies its changed routines; the same:
the hashes decide, each routine applied when its text differs.

A migration runs in one transaction, unless its first line is NO_TRANSACTION: then each of its statements runs on
its own (one per `;` at a line's end), which CREATE INDEX CONCURRENTLY needs (an index built on a live cell without
blocking its writes). Each such statement must be safe to run again (IF NOT EXISTS...): the migration is recorded
only once all of them succeeded, and a retry runs them all again; an index a failed CONCURRENTLY build left
invalid is dropped before it is built again."""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
from pathlib import Path
from typing import NamedTuple

import asyncpg

from ledger_common.server_urls import InvalidServerUrl, url_refusals_redacted

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_KEY = 7_311_900_001
GENERATIONS = "generations.txt"
NO_TRANSACTION = "-- migrate: no transaction"
_LOCK_POLL_S = 0.05
_CONCURRENT_INDEX = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+(\w+)",
                               re.IGNORECASE)

# The routines of routines/ (a store's routines live beside its migrations), in the order they are created.
# plpgsql bodies are bound when they first run, but a LANGUAGE sql body is checked when it is created: a
# routine comes after everything its SQL body names.
ROUTINES = (
    "new_id", "entry_status", "balances", "events", "event", "version_hash", "version_entries", "effects_of",
    "entry_results",
    "balances_at", "balance_at", "accounts_current", "accounts_matching", "transactions_matching",
    "entries_matching", "fence", "tenant_open", "unserved_tenants", "audit_horizon", "claim_key", "lock", "check",
    "headroom", "monitor_holds", "monitor", "apply", "apply_report", "post", "post_in_group", "post_queued_group",
    "transition", "replace_entries", "event_time_floor", "sequence_events", "sequence_tenant_events", "events_before",
    "events_until",
    "statement_entries", "category_sums", "category_refresh",
)


def routines_hash(routines: list[tuple[str, str, str]]) -> str:
    """One sha-256 over the routines (routine_files): what a line of routines/generations.txt records."""
    return hashlib.sha256("".join(f"{name} {checksum}\n" for name, _, checksum in routines).encode()).hexdigest()


def generations(migrations: Path = MIGRATIONS_DIR) -> list[tuple[int, str]]:
    """(generation, routines hash) of each line of routines/generations.txt beside `migrations`, oldest first; none
    when the store has no routines/."""
    path = migrations.parent / "routines" / GENERATIONS
    if not path.parent.is_dir():
        return []
    found = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            generation, _, recorded = line.strip().partition(" ")
            found.append((int(generation), recorded.strip()))
    if not found:
        raise RuntimeError(f"{path} records no generation")
    return found


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[str, Path]]:
    return sorted((path.stem, path) for path in directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))


def routine_files(migrations: Path = MIGRATIONS_DIR) -> list[tuple[str, str, str]]:
    """(name, text, sha-256 of the text) of each routine beside `migrations`, in ROUTINES order; none when the
    store has no routines/ (the control plane's catalog)."""
    directory = migrations.parent / "routines"
    if not directory.is_dir():
        return []
    unlisted = {path.stem for path in directory.glob("*.sql")} - set(ROUTINES)
    if unlisted:
        raise RuntimeError(f"routines not in migrate.ROUTINES (their order is not known): {sorted(unlisted)}")
    found = []
    for name in ROUTINES:
        text = (directory / f"{name}.sql").read_text()
        found.append((f"routine:{name}", text, hashlib.sha256(text.encode()).hexdigest()))
    return found


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration not yet applied, then every routine new or changed; return the names applied now
    (routines as `routine:<name>`)."""
    applied_now: list[str] = []
    await _lock(conn)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for name, path in migration_files(directory):
            if name in done:
                continue
            text = path.read_text()
            if text.startswith(NO_TRANSACTION):
                for statement in statements(text):
                    await _run_alone(conn, statement)
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            else:
                async with conn.transaction():
                    await conn.execute(text)
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            applied_now.append(name)
        routines = routine_files(directory)
        if routines:
            generation = generations(directory)[-1][0]
            stored = await conn.fetchval("SELECT generation FROM schema_routines_generation")
            if _newer(done, {name for name, _ in migration_files(directory)}, stored, generation):
                routines = []
            elif (stored or 0) < generation:
                # Recorded before any routine is written: a process of the older generation that starts while
                # these are half written (this one failed) leaves them be; this code's next start finishes them.
                await conn.execute(
                    "INSERT INTO schema_routines_generation (generation) VALUES ($1) ON CONFLICT (singleton)"
                    " DO UPDATE SET generation = excluded.generation, applied_at = now()", generation)
        if routines:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_routines (name text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            current = {r["name"]: r["checksum"] for r in await conn.fetch("SELECT name, checksum FROM schema_routines")}
            for name, text, checksum in routines:
                if current.get(name) == checksum:
                    continue
                async with conn.transaction():
                    await conn.execute(text)
                    await conn.execute(
                        "INSERT INTO schema_routines (name, checksum) VALUES ($1, $2) ON CONFLICT (name)"
                        " DO UPDATE SET checksum = excluded.checksum, applied_at = now()", name, checksum)
                applied_now.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


def _newer(done: set[str], known: set[str], stored: int | None, generation: int) -> bool:
    """Whether the database's routines are newer than the code's: newer code migrated it (a migration this code does
    not know) or applied a higher routines generation. Its routines are that code's, which serve older callers (a
    routine keeps its old calls working): writing this code's older text back would undo them. _PENDING says the
    same in SQL."""
    return bool(done - known) or (stored or 0) > generation


async def _lock(conn: asyncpg.Connection) -> None:
    """The migration lock, polled rather than waited for: a session blocked in pg_advisory_lock holds a snapshot,
    which a CREATE INDEX CONCURRENTLY of the lock's holder waits out (a deadlock)."""
    while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
        await asyncio.sleep(_LOCK_POLL_S)


def statements(text: str) -> list[str]:
    """A NO_TRANSACTION migration's statements: each ends with `;` at the end of a line outside a $$ body."""
    found, current, quoted = [], [], False
    for line in text.splitlines():
        current.append(line)
        quoted ^= line.count("$$") % 2 == 1
        if not quoted and re.search(r";[ \t]*$", line):
            found.append("\n".join(current))
            current = []
    found.append("\n".join(current))
    return [s.strip() for s in found if _code(s)]


def _code(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--")).strip()


async def _run_alone(conn: asyncpg.Connection, statement: str) -> None:
    index = _CONCURRENT_INDEX.search(_code(statement))
    if index is not None and await conn.fetchval(
            "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relname = $1",
            index.group(1)):
        await conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{index.group(1)}"')
    await conn.execute(statement)


_PENDING = """
SELECT array(
    SELECT m.name FROM unnest($1::text[]) WITH ORDINALITY AS m(name, i)
    WHERE NOT EXISTS (SELECT 1 FROM schema_migrations d WHERE d.name = m.name) ORDER BY m.i) ||
  array(
    SELECT r.name FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS r(name, checksum, i)
    WHERE r.checksum IS DISTINCT FROM (SELECT a.checksum FROM schema_routines a WHERE a.name = r.name)
      AND NOT EXISTS (SELECT 1 FROM schema_migrations d WHERE d.name <> ALL ($1::text[]))  -- a newer schema's
      AND coalesce((SELECT g.generation FROM schema_routines_generation g), 0) <= $4  -- or newer routines (_newer)
    ORDER BY r.i)
"""


class Expected(NamedTuple):
    """What a store's code expects of its database: its migrations' names, its routines' (name, checksum) and their
    generation (0 without routines)."""
    migrations: tuple[str, ...]
    routines: tuple[tuple[str, str], ...]
    generation: int = 0


def expected(directory: Path = MIGRATIONS_DIR) -> Expected:
    """The files read and hashed now: a process takes this once (its code does not change under it), so that a
    readiness probe only reads the database."""
    routines = routine_files(directory)
    return Expected(tuple(name for name, _ in migration_files(directory)),
                    tuple((name, checksum) for name, _, checksum in routines),
                    generations(directory)[-1][0] if routines else 0)


async def pending_migrations(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR,
                             files: Expected | None = None) -> list[str]:
    """Migrations not applied, and routines missing or whose text changed since they were applied (unless the
    database's routines are newer, as `migrate` says); against `files` (taken once by the caller) or the files of
    `directory` as they are now."""
    files = files or expected(directory)
    if files.routines:
        try:  # one round trip where the tables exist (a cell's database once migrated: every probe)
            return await conn.fetchval(_PENDING, list(files.migrations), [n for n, _ in files.routines],
                                       [c for _, c in files.routines], files.generation)
        except asyncpg.UndefinedTableError:
            pass
    migrations_exist, routines_exist, generation_exists = await conn.fetchrow(
        "SELECT to_regclass('schema_migrations') IS NOT NULL, to_regclass('schema_routines') IS NOT NULL,"
        " to_regclass('schema_routines_generation') IS NOT NULL")
    done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")} if migrations_exist else set()
    pending = [name for name in files.migrations if name not in done]
    stored = (await conn.fetchval("SELECT generation FROM schema_routines_generation")
              if generation_exists else None)
    if files.routines and not _newer(done, set(files.migrations), stored, files.generation):
        current = ({r["name"]: r["checksum"] for r in await conn.fetch("SELECT name, checksum FROM schema_routines")}
                   if routines_exist else {})
        pending += [name for name, checksum in files.routines if current.get(name) != checksum]
    return pending


async def _main(url: str) -> int:
    """The command: 2 for no or a malformed URL (never libpq's default database), 4 for a database it cannot reach."""
    if not url:
        print("error: a database URL is required: python -m cell.store.migrate URL "
              "(make migrate: set LEDGER_DATABASE_URL)", file=sys.stderr)
        return 2
    try:
        with url_refusals_redacted("the database URL"):
            conn = await asyncpg.connect(url)
    except InvalidServerUrl as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        print(f"error: the database is unreachable or refused the connection ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return 4
    try:
        names = await migrate(conn)
        print("applied: " + (", ".join(names) if names else "nothing (up to date)"))
    finally:
        await conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1] if len(sys.argv) > 1 else "")))
