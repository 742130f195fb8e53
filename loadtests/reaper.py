"""What a benchmark started is stopped and removed however the benchmark ends, SIGKILL included.

A benchmark stops its servers (PostgreSQL, cells, routers, workers, Valkey, the SQS endpoint) in its `finally`
blocks, on Ctrl-C and SIGTERM too (`httpload.run`); killed outright (SIGKILL, the OOM killer, `timeout -s KILL`), it
left them running, holding ports, memory and directories and skewing the next measurement on the same cores.
`guard()`, called first by a benchmark's command line, marks everything the benchmark will start and starts a
watcher in a session of its own (untouched by signals to the benchmark's process group):

- the mark: a random token in the environment (`BENCH_REAP_TOKEN`), which every process the benchmark starts
  inherits, grandchildren too (PostgreSQL's postmaster, which pg_ctl daemonizes, and its backends), and a directory of
  its own as the temporary directory (`tempfile.tempdir` and TMPDIR): every working directory is made in it;
- the watcher holds the read end of a pipe whose only write end is the benchmark's: when the benchmark ends, however
  it ends, the pipe closes and the watcher stops every process that carries the token (PostgreSQL by an immediate
  shutdown, so that it frees its shared memory; the rest with SIGKILL) and removes the directory.

After a benchmark that stopped its servers itself, the watcher finds nothing left to stop. (A process's
/proc/PID/environ is the environment it was started with: the benchmark itself, which set the token after it
started, does not carry it, nor does the watcher, started without it; a nested benchmark carries its parent's.)
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOKEN_VARIABLE = "BENCH_REAP_TOKEN"
POSTGRES_STOP_S_MAX = 15.0  # an immediate shutdown, then SIGKILL
REAP_S_MAX = 30.0
POLL_S = 0.05
_write_ends: list[int] = []


def guard() -> Path:
    """Mark what this process starts from now on, and have it stopped when this process ends. Returns the
    temporary directory everything is made in."""
    token = secrets.token_hex(12)
    root = Path(tempfile.mkdtemp(prefix="lb-")).resolve()  # short: PostgreSQL's socket path lives under it
    read_end, write_end = os.pipe()  # not inherited by what this process starts: its end stays the only one
    env = {k: v for k, v in os.environ.items() if k != TOKEN_VARIABLE}
    subprocess.Popen([sys.executable, "-m", "loadtests.reaper"], stdin=read_end, env=env, start_new_session=True,
                     cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL)
    os.close(read_end)
    os.write(write_end, f"{token} {root}\n".encode())
    _write_ends.append(write_end)  # open until this process ends: the end of the pipe is the end of the benchmark
    os.environ[TOKEN_VARIABLE] = token
    os.environ["TMPDIR"] = str(root)
    tempfile.tempdir = str(root)
    atexit.register(_remove_if_empty, root)  # after a clean stop, at once rather than when the watcher gets to it
    return root


def _remove_if_empty(root: Path) -> None:
    try:
        root.rmdir()
    except OSError:
        pass  # something is left: the watcher stops it and removes the directory


def _marked(token: bytes) -> dict[int, tuple[int, str]]:
    """The live processes that carry the token: pid -> (parent's pid, command name)."""
    needle = TOKEN_VARIABLE.encode() + b"=" + token
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone, or not ours to read
        name = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode(errors="replace")
        state, ppid = stat[stat.rindex(b")") + 2:].split()[:2]
        if state not in (b"Z", b"X"):
            found[int(entry.name)] = (int(ppid), name)
    return found


def _signal(pids, sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def reap(token: bytes, root: Path) -> list[int]:
    """Stop every process carrying `token` and remove `root`; the pids found."""
    found: set[int] = set()
    deadline = time.monotonic() + REAP_S_MAX
    while True:
        marked = _marked(token)
        found |= marked.keys()
        if not marked or time.monotonic() > deadline:
            break
        # PostgreSQL's postmasters (a postgres process whose parent is not one): an immediate shutdown (SIGQUIT)
        # stops their backends and frees their shared memory. The rest first, so that no client reconnects.
        postmasters = [pid for pid, (ppid, name) in marked.items()
                       if name == "postgres" and marked.get(ppid, (0, ""))[1] != "postgres"]
        _signal([pid for pid, (_, name) in marked.items() if name != "postgres"], signal.SIGKILL)
        _signal(postmasters, signal.SIGQUIT)
        stop_by = min(deadline, time.monotonic() + POSTGRES_STOP_S_MAX)
        while time.monotonic() < stop_by and any(pid in _marked(token) for pid in postmasters):
            time.sleep(POLL_S)
        _signal(_marked(token), signal.SIGKILL)
        time.sleep(POLL_S)
    shutil.rmtree(root, ignore_errors=True)
    return sorted(found)


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    token, root = sys.stdin.buffer.readline().split()
    while sys.stdin.buffer.read(65536):  # until the benchmark's end, however it ends
        pass
    reap(token, Path(root.decode()))


if __name__ == "__main__":
    main()
