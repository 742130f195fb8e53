"""CLI test fixtures: a control-plane database, two real cells (`python -m cell` processes on their own
databases) and Valkey; `ledgerctl` runs through its real click entry point."""

from __future__ import annotations

import uuid

import pytest

from cli_rig import CellProcess, Ledgerctl


@pytest.fixture(scope="package")
def stack(make_database, redis_url):
    suffix = uuid.uuid4().hex[:6]
    cp_url = make_database(f"cp_cli_{suffix}", migrate_cell=False)
    cells = [CellProcess(f"cli-{i}", make_database(f"cli_cell_{i}_{suffix}", migrate_cell=False)) for i in (1, 2)]
    try:
        for cell in cells:
            cell.wait_ready()
        env = {"CONTROL_PLANE_DATABASE_URL": cp_url, "CONTROL_PLANE_REDIS_URL": redis_url,
               "CONTROL_PLANE_ACTOR": "cli-tests"}
        ctl = Ledgerctl(env)
        ctl("migrate")
        for cell in cells:
            ctl("cells", "add", cell.name, "--api-url", cell.url, "--database-url", cell.database_url)
        yield {"ctl": ctl, "cells": {c.name: c for c in cells}, "cp_url": cp_url, "redis_url": redis_url,
               "env": env, "make_database": make_database}
    finally:
        for cell in cells:
            cell.stop()


@pytest.fixture
def ctl(stack) -> Ledgerctl:
    return stack["ctl"]
