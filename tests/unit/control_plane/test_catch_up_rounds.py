"""When a tenant move's catch-up rounds stop (control_plane.moves.catch_up_ends)."""

from control_plane.moves import catch_up_ends
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
