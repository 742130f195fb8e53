"""make run's (and every benchmark's) embedded PostgreSQL stops for good: a server that does not finish its fast
shutdown in time (a busy disk under its shutdown checkpoint, a hung process) is stopped at once, then killed."""

from __future__ import annotations

import os
import signal

from make_run_rig import port_free

from control_plane.devstack import EmbeddedPostgres, pid_alive


def test_a_server_that_does_not_stop_in_time_is_stopped_anyway(tmp_path):
    server = EmbeddedPostgres(tmp_path / "pg", fsync=False).start()
    pid = server.pid
    assert pid is not None and pid_alive(pid)
    os.kill(pid, signal.SIGSTOP)  # it can no longer act on pg_ctl's signals: a fast stop times out
    try:
        server.stop(timeout_s=1)  # each of its two stops (fast, then immediate) waits this long
        assert not pid_alive(pid), "the postmaster still runs after stop()"
        assert port_free(server.port)
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
