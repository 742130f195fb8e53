"""make run's supervisor without processes: the back-off between restarts, and a death that stays with its unit."""

from __future__ import annotations

import pytest

from control_plane import run


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class FakeUnit(run.Unit):
    def __init__(self, name: str, clock: Clock, fail_starts: int = 0) -> None:
        super().__init__(name)
        self.clock, self.fail_starts = clock, fail_starts
        self.running, self.starts, self.cleanups = False, 0, 0

    def start(self) -> None:
        if self.fail_starts:
            self.fail_starts -= 1
            raise RuntimeError("port in use")
        self.running, self.starts, self.started_at = True, self.starts + 1, self.clock.now

    def exit_status(self) -> str | None:
        return None if self.running else "exited with -9"

    def clean_up(self) -> None:
        self.cleanups += 1

    def stop(self) -> None:
        self.running = False


@pytest.fixture
def clock(monkeypatch, tmp_path):
    clock = Clock()
    monkeypatch.setattr(run.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(run, "DATA", tmp_path)
    return clock


def delays(unit: FakeUnit, sup: run.Supervisor, clock: Clock, deaths: int, up_s: float = 0.1) -> list[float]:
    """Kill the unit `deaths` times, each after `up_s` up; the delays before each restart."""
    seen = []
    for _ in range(deaths):
        clock.now += up_s
        unit.running = False
        sup.watch()
        assert unit.restart_at is not None
        seen.append(round(unit.restart_at - clock.now, 3))
        clock.now = unit.restart_at
        sup.watch()
        assert unit.running and unit.restart_at is None
    return seen


def test_restarts_back_off_from_half_a_second_doubling_to_ten(clock, capsys):
    sup = run.Supervisor()
    unit, other = FakeUnit("cell-1 api", clock), FakeUnit("cell-2 api", clock)
    for u in (unit, other):
        u.start()
        sup.children.append(u)
    assert delays(unit, sup, clock, 7) == [0.5, 1, 2, 4, 8, 10, 10]
    assert other.starts == 1 and other.running, "a death stays with its unit"
    assert unit.cleanups == 7
    assert "[run] cell-1 api exited with -9; restarting in 0.5s" in capsys.readouterr().out


def test_the_back_off_resets_once_a_unit_stayed_up(clock):
    sup = run.Supervisor()
    unit = FakeUnit("router", clock)
    unit.start()
    sup.children.append(unit)
    assert delays(unit, sup, clock, 3) == [0.5, 1, 2]
    assert delays(unit, sup, clock, 2, up_s=run.STABLE_S) == [0.5, 0.5]


def test_a_failed_start_is_retried_with_back_off(clock, capsys):
    sup = run.Supervisor()
    unit = FakeUnit("valkey", clock)
    unit.start()
    sup.servers.append(unit)
    unit.fail_starts = 2
    unit.running = False
    sup.watch()  # death noticed
    for expected in (1, 2):
        clock.now = unit.restart_at
        sup.watch()  # the start fails: retried later, longer
        assert not unit.running and round(unit.restart_at - clock.now, 3) == expected
    clock.now = unit.restart_at
    sup.watch()
    assert unit.running
    assert "[run] valkey did not start (port in use); restarting in 1s" in capsys.readouterr().out
