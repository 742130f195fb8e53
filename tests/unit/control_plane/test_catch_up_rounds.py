"""When a tenant move's catch-up rounds stop (control_plane.moves.catch_up_ends), when the freeze may follow
(fits_freeze), the settings that say so, refused out of range by ledgerctl before anything runs, and what a round
touched (Mover._touch)."""

import json

import pytest
from click.testing import CliRunner

from control_plane.cli import cli
from control_plane.moves import Mover, catch_up_ends, fits_freeze
from control_plane.settings import ControlPlaneSettings

S = ControlPlaneSettings(move_catch_up_rows_max=500, move_catch_up_rounds_max=20)


def test_a_small_enough_round_ends_the_catch_up():
    assert catch_up_ends(500, None, 2, S) and catch_up_ends(0, None, 2, S)
    assert not catch_up_ends(501, None, 2, S)


def test_rounds_go_on_while_each_shrinks_by_more_than_a_quarter():
    assert not catch_up_ends(2000, 4000, 3, S)
    assert not catch_up_ends(2999, 4000, 3, S)


def test_a_round_that_hovers_ends_the_catch_up():
    # A tenant writing about as fast as a round copies: ~1,500 rows a round, a little less or more each time.
    assert catch_up_ends(1400, 1500, 3, S)
    assert catch_up_ends(3000, 4000, 3, S)
    assert catch_up_ends(1600, 1500, 3, S)


def test_rounds_end_after_the_most_allowed():
    assert not catch_up_ends(600, 10_000, 20, S)
    assert catch_up_ends(600, 10_000, 21, S)


def test_the_freeze_follows_only_a_round_it_can_copy_again_within_its_bound():
    s = ControlPlaneSettings(move_freeze_s_max=1.0, move_rows_per_s_estimate=20_000)
    assert fits_freeze(0, s) and fits_freeze(20_000, s)
    assert not fits_freeze(20_001, s) and not fits_freeze(109_140, s)  # seen: a 25 s freeze
    assert fits_freeze(5_000, ControlPlaneSettings(move_freeze_s_max=0.25, move_rows_per_s_estimate=20_000))
    assert not fits_freeze(5_001, ControlPlaneSettings(move_freeze_s_max=0.25, move_rows_per_s_estimate=20_000))


@pytest.mark.parametrize("name, value", [("MOVE_FREEZE_S_MAX", "0"), ("MOVE_ROWS_PER_S_ESTIMATE", "-5"),
                                         ("MOVE_CATCH_UP_S_MAX", "-1"), ("MOVE_FREEZE_S_MAX", "soon"),
                                         ("MOVE_FREEZE_S_LIMIT", "0")])
def test_ledgerctl_refuses_a_move_setting_out_of_range_with_a_problem(name, value):
    result = CliRunner().invoke(cli, ["--format", "json", "cells", "list"], env={f"CONTROL_PLANE_{name}": value})
    assert result.exit_code == 1
    problem = json.loads(result.output.strip().splitlines()[-1])
    assert problem["code"] == "invalid_settings" and name.lower() in problem["title"], problem


def test_a_round_keeps_each_touched_subject_once_in_the_order_first_seen():
    mover = Mover(conn=None, settings=S, move={"tenant_id": "t", "watermarks": {"touched": {"accounts": ["a"]}}})
    mover._touch({"accounts": ["b", "a", "b"], "transactions": ["x"]})
    mover._touch({"accounts": ["c", "b"], "transactions": ["x", "y"]})
    assert mover.w["touched"] == {"accounts": ["a", "b", "c"], "transactions": ["x", "y"]}
    # A new round (or a resumed mover's saved state) starts a new dict: what the old one held is not taken for seen.
    mover.w["touched"] = {"accounts": ["c"]}
    mover._touch({"accounts": ["a", "c"]})
    assert mover.w["touched"] == {"accounts": ["c", "a"]}


@pytest.mark.parametrize("env", [{"MOVE_FREEZE_S_LEASE": "5"}, {"MOVE_FREEZE_S_LEASE": "6"},
                                 {"MOVE_FREEZE_S_LIMIT": "9.5"},
                                 {"MOVE_FREEZE_S_LEASE": "3", "MOVE_FREEZE_S_LIMIT": "2", "MOVE_FREEZE_S_MAX": "1"}])
def test_ledgerctl_refuses_a_freeze_lease_no_longer_than_a_freeze_may_take(env):
    """A freeze may take move_freeze_s_limit (its final catch-up's bound) plus its verification (of what the final round
    copied: a round the freeze admits only if it copies within move_freeze_s_max). A lease no longer than that would
    end freezes that were about to finish: every move would give its freeze up."""
    result = CliRunner().invoke(cli, ["--format", "json", "cells", "list"],
                                env={f"CONTROL_PLANE_{k}": v for k, v in env.items()})
    assert result.exit_code == 1, result.output
    problem = json.loads(result.output.strip().splitlines()[-1])
    assert problem["code"] == "invalid_settings", problem
    assert "move_freeze_s_lease" in problem["title"] and "move_freeze_s_limit" in problem["title"], problem


def test_a_freeze_lease_above_what_a_freeze_may_take_is_accepted():
    s = ControlPlaneSettings(move_freeze_s_lease=2.0, move_freeze_s_limit=1.0, move_freeze_s_max=0.5)
    assert s.move_freeze_s_lease == 2.0
    assert ControlPlaneSettings().move_freeze_s_lease == 10.0
