"""Commands on the same tenant racing a move: two `tenants move`, a move and a `cells drain` of its cell, a move planned
before another one moved the tenant. Each race is made deterministic by a catalog row another session holds: the
commands queue behind it in a known order. One wins; the other exits 1 in one line naming what it ran into, never a
second running move, never a traceback."""

from __future__ import annotations

import asyncio

from cli_rig import finished, holding, spawn_async, until
from test_cells_drain import third_cell  # noqa: F401  (a fixture)
from test_ledgerctl import new_id
from test_moves import _state_in


async def _queued_behind_the_tenant_row(stack, tenant_id: str, first: tuple[str, ...], second: tuple[str, ...]):
    """`first`, then `second`, each started once the one before waits for the tenant's catalog row (held by another
    session meanwhile), then the row let go: (each one's exit code and answer), first's first."""
    async with holding(stack["cp_url"], "SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", tenant_id) as held:
        commands = []
        for n, args in enumerate((first, second), start=1):
            commands.append(proc := await spawn_async(stack, *args))
            await until(lambda proc=proc, n=n: held.queued(proc, "%FROM tenants%FOR NO KEY UPDATE%", n),
                        f"{' '.join(args)} to wait for the tenant's catalog row")
        await held.release()
        return [await finished(proc) for proc in commands]


def test_two_moves_of_a_tenant_started_at_once_one_runs_the_other_names_it(ctl, stack):
    tenant_id = new_id("race")
    ctl("tenants", "create", tenant_id, "--cell", "cli-1")
    move = ("tenants", "move", tenant_id, "--to", "cli-2", "--yes")
    (first_rc, first), (second_rc, second) = asyncio.run(_queued_behind_the_tenant_row(stack, tenant_id, move, move))
    assert (first_rc, first["state"]) == (0, "done"), (first, second)
    assert (second_rc, second["code"]) == (1, "already_moving"), second
    assert f"move {first['id']}" in second["title"], second
    assert [m["id"] for m in ctl.json("moves", "list", "--tenant", tenant_id)] == [first["id"]]
    assert ctl.json("tenants", "show", tenant_id)["cell"] == "cli-2"


def test_a_move_and_a_drain_of_its_cell_started_at_once_one_runs_the_other_names_it(ctl, stack, third_cell):  # noqa: F811
    name, tenant_id = third_cell.name, new_id("race")
    ctl("tenants", "create", tenant_id, "--cell", name)
    (move_rc, moved), (drain_rc, drained) = asyncio.run(_queued_behind_the_tenant_row(
        stack, tenant_id, ("tenants", "move", tenant_id, "--to", "cli-2", "--yes"), ("cells", "drain", name, "--yes")))
    assert (move_rc, moved["state"]) == (0, "done"), moved
    assert (drain_rc, drained["code"]) == (1, "already_moving"), drained
    assert f"move {moved['id']}" in drained["title"] and "drain of cell" in drained["title"], drained
    assert [m["id"] for m in ctl.json("moves", "list", "--tenant", tenant_id)] == [moved["id"]]
    # Run again, the drain finds the cell empty.
    assert ctl.json("cells", "drain", name, "--yes")["tenants_left"] == 0


def test_a_move_planned_before_another_move_took_the_tenant_elsewhere_is_refused(ctl, stack, third_cell):  # noqa: F811
    """`tenants move X --to cli-2` has planned X's move off cli-1 and is held as it records it (another session holds
    cli-2's catalog row, which the move locks first); meanwhile `tenants move X --to C` runs to its end. The first one
    then exits 1 naming where X lives now: nothing recorded, nothing copied onto cli-2 from the copy X left on cli-1."""
    name, tenant_id = third_cell.name, new_id("race")
    ctl("tenants", "create", tenant_id, "--cell", "cli-1")

    async def go():
        async with holding(stack["cp_url"], "SELECT 1 FROM cells WHERE name = 'cli-2' FOR UPDATE") as held:
            stale = await spawn_async(stack, "tenants", "move", tenant_id, "--to", "cli-2", "--yes")
            await until(lambda: held.queued(stale, "%FROM cells%FOR SHARE%"), "the move to cli-2 to record itself")
            moved = await finished(await spawn_async(stack, "tenants", "move", tenant_id, "--to", name, "--yes"))
            await held.release()
            return moved, await finished(stale)

    (moved_rc, moved), (stale_rc, stale) = asyncio.run(go())
    assert (moved_rc, moved["state"]) == (0, "done"), moved
    assert (stale_rc, stale["code"]) == (1, "tenant_changed"), stale
    assert f"cell {name}" in stale["title"], stale
    assert [m["id"] for m in ctl.json("moves", "list", "--tenant", tenant_id)] == [moved["id"]]
    tenant = ctl.json("tenants", "show", tenant_id)
    assert (tenant["cell"], tenant["state"]) == (name, "active"), tenant
    assert _state_in(stack["cells"]["cli-2"].database_url, tenant_id) is None
    assert _state_in(third_cell.database_url, tenant_id) == "active"


def test_a_move_planned_while_a_delete_of_the_tenant_is_half_done_says_so(ctl, stack):
    """`tenants delete X` has deleted X's row on its cell and is held before its catalog part commits (another session
    holds the audit log); `tenants move X` then finds the catalog placing X on a cell that no longer holds it. It exits
    1 saying that X is being deleted, one line, nothing recorded or copied."""
    tenant_id = new_id("race")
    ctl("tenants", "create", tenant_id, "--cell", "cli-1")

    async def go():
        async with holding(stack["cp_url"], "LOCK TABLE operator_audit IN SHARE MODE") as held:
            delete = await spawn_async(stack, "tenants", "delete", tenant_id, "--yes")
            await until(lambda: held.queued(delete, "%INSERT INTO operator_audit%"), "the delete to audit itself")
            moved = await finished(await spawn_async(stack, "tenants", "move", tenant_id, "--to", "cli-2", "--yes"))
            await held.release()
            return moved, await finished(delete)

    (move_rc, moved), (delete_rc, deleted) = asyncio.run(go())
    assert (delete_rc, deleted["deleted"]) == (0, True), deleted
    assert (move_rc, moved["code"]) == (1, "tenant_being_deleted"), moved
    assert "being deleted" in moved["title"] and "None" not in moved["title"], moved
    assert ctl.json("moves", "list", "--tenant", tenant_id) == []
    assert _state_in(stack["cells"]["cli-2"].database_url, tenant_id) is None
