"""The routines' generation (cell/store/routines/generations.txt) moves with them: a database keeps the routines of
the highest generation that reached it, so a routine changed without a new generation would be written back and forth
by two releases (the old one's at each old process's start) instead of upgraded once."""

from __future__ import annotations

from cell.store.migrate import expected, generations, routine_files, routines_hash


def test_every_change_to_the_routines_has_its_generation():
    recorded = generations()
    current = routines_hash(routine_files())
    generation = recorded[-1][0]
    assert recorded[-1][1] == current, (
        "the routines changed since their last generation: append this line to cell/store/routines/generations.txt "
        f"(never edit one already there): {generation + 1} {current}")


def test_generations_count_up_from_1_one_at_a_time():
    assert [generation for generation, _ in generations()] == list(range(1, len(generations()) + 1))
    assert expected().generation == len(generations())
