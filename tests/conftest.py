"""The test session's real servers: one throwaway PostgreSQL (and, when asked for, Valkey and an SQS
endpoint), started once per session; every test gets fresh tenants instead of truncated tables."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import pytest

from control_plane.devstack import EmbeddedPostgres, EmbeddedSQS, EmbeddedValkey, remove_tree


@pytest.fixture(scope="session")
def session_dir():
    path = Path(tempfile.mkdtemp(prefix="ledger-tests-"))
    yield path
    remove_tree(path)


@pytest.fixture(scope="session")
def pg_server(session_dir):
    """A PostgreSQL server for the session, or the one at TEST_POSTGRES_URL (a superuser URL)."""
    if os.environ.get("TEST_POSTGRES_URL"):
        yield None
        return
    # fsync off: a test server's crash safety is not under test; synchronous_commit stays on.
    server = EmbeddedPostgres(session_dir / "pg", fsync=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def make_database(pg_server):
    """Create a fresh database by name, migrated unless asked not to; returns its URL. A migrated one is a copy
    of a template database migrated once for the session (what migrating it would make, in a fraction of the
    time); the migrations themselves run on fresh databases in tests/integration/cell/test_migrations.py."""
    import asyncio

    import asyncpg

    from cell.store.migrate import migrate

    base = os.environ.get("TEST_POSTGRES_URL") or pg_server.url
    template = f"cell_template_{os.getpid()}"  # a server from TEST_POSTGRES_URL may serve other sessions too
    templated: list[bool] = []

    def create(name: str, migrate_cell: bool = True) -> str:
        if os.environ.get("TEST_POSTGRES_URL") and _xdist_worker():  # one server for every worker: names apart
            name = f"{name}_{_xdist_worker()}"

        async def go() -> str:
            admin = await asyncpg.connect(base)
            try:
                if migrate_cell and not templated:
                    await _fresh(admin, template)
                    conn = await asyncpg.connect(_database_url(base, template))
                    try:
                        await migrate(conn)
                    finally:
                        await conn.close()
                    templated.append(True)
                await _fresh(admin, name, template if migrate_cell else None)
            finally:
                await admin.close()
            return _database_url(base, name)

        return asyncio.run(go()) if not _loop_running() else _run_in_thread(go)

    yield create
    if templated:
        async def drop() -> None:
            admin = await asyncpg.connect(base)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
            finally:
                await admin.close()

        asyncio.run(drop()) if not _loop_running() else _run_in_thread(drop)


async def _fresh(admin, name: str, template: str | None = None) -> None:
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))


def _database_url(base: str, name: str) -> str:
    return base.rsplit("/", 1)[0] + "/" + name


def _loop_running() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def _run_in_thread(coro_fn):
    import asyncio
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_fn())).result()


@pytest.fixture(scope="session")
def cell_database_url(make_database):
    """The main cell database of the session (migrated)."""
    return make_database("cell_test")


@pytest.fixture(scope="session", autouse=True)
def background_fuzz(request, tmp_path_factory):
    """The OpenAPI fuzz (tests/integration/router/fuzz_rig.py), started with the session's first test when its
    test is selected: CPU-bound for minutes, it overlaps the other tests' waiting instead of adding to it."""
    from integration.router.fuzz_rig import MODULE

    if not any(item.nodeid.endswith(MODULE) or f"/{MODULE}::" in item.nodeid for item in request.session.items):
        yield None
        return
    if _xdist_worker():  # every worker collects every test but runs a share: fuzz_run starts it where it runs
        yield None
        return
    with _fuzz(request, tmp_path_factory) as fuzz:
        yield fuzz


@pytest.fixture
def fuzz_run(background_fuzz, request, tmp_path_factory):
    """The session's background fuzz; under pytest-xdist, a fuzz run in the foreground of the test that asks for it
    (sorted first: the other workers' tests overlap it)."""
    if background_fuzz is not None:
        yield background_fuzz
        return
    with _fuzz(request, tmp_path_factory) as fuzz:
        yield fuzz


@contextlib.contextmanager
def _fuzz(request, tmp_path_factory):
    """A fuzz launched on the session's servers (its failure to start kept for its test), stopped at the end."""
    from integration.router.fuzz_rig import BackgroundFuzz

    fuzz = BackgroundFuzz(request.getfixturevalue("make_database"), request.getfixturevalue("redis_url"),
                          tmp_path_factory.mktemp("fuzz"))
    try:
        yield fuzz.launch()
    finally:
        fuzz.stop()


def pytest_collection_modifyitems(items):
    """The fuzz's test last: by then its background run is done (or nearly). Under pytest-xdist, first: its worker
    runs the fuzz in the foreground while the other workers take the rest."""
    from integration.router.fuzz_rig import MODULE

    first = bool(_xdist_worker())
    items.sort(key=lambda item: (f"/{MODULE}::" in f"/{item.nodeid}") != first)


def _xdist_worker() -> str | None:
    """pytest-xdist's name for this worker process (gw0, gw1...), or None when the session runs in one process."""
    return os.environ.get("PYTEST_XDIST_WORKER")


@pytest.fixture(scope="session")
def valkey_server(session_dir):
    if os.environ.get("TEST_REDIS_URL"):
        yield None
        return
    server = EmbeddedValkey(session_dir / "valkey").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(valkey_server):
    return os.environ.get("TEST_REDIS_URL") or valkey_server.url


@pytest.fixture(scope="session")
def sqs_server():
    if os.environ.get("TEST_SQS_ENDPOINT_URL"):
        yield None
        return
    server = EmbeddedSQS().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqs_endpoint_url(sqs_server):
    return os.environ.get("TEST_SQS_ENDPOINT_URL") or sqs_server.url


# ---- diagnostics: what every asyncio task was waiting on, when a test is about to time out -------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """pytest-timeout shows the threads' stacks, which for a hung async test is only the loop's select. Shortly
    before the timeout, print every pending asyncio task's stack as well (captured with the test's output)."""
    import threading

    marker = item.get_closest_marker("timeout")
    option = item.config.getoption("timeout", None)  # --timeout, else the ini's
    timeout_s = float(marker.args[0] if marker and marker.args else option or item.config.getini("timeout") or 0)
    timer = None
    if timeout_s > 20:
        timer = threading.Timer(timeout_s - 10, _dump_tasks, args=(item.nodeid,))
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()


def _dump_tasks(nodeid: str) -> None:
    import asyncio
    import sys

    print(f"\n~~~~ asyncio tasks still pending, 10 s before {nodeid} times out ~~~~", file=sys.stderr)
    try:
        tasks = list(asyncio.tasks._all_tasks)  # every task of every loop (3.11); read-only use, for diagnosis
    except Exception as exc:  # noqa: BLE001
        print(f"(tasks not readable: {exc!r})", file=sys.stderr)
        return
    for task in tasks:
        if not task.done():
            task.print_stack(limit=30, file=sys.stderr)
