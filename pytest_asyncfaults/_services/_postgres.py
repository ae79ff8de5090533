"""Real services behind the proxies: a throwaway PostgreSQL cluster and an SMTP sink.

Faults are only worth testing against the real protocols: an app's driver
reacts to a stalled PostgreSQL handshake or a reset SMTP session in ways no
mock reproduces. So the fixtures start the real thing, once per run, on a
free loopback port:

- ``PostgresCluster``: ``initdb`` + ``pg_ctl start`` from the system's
  server binaries, in a temporary directory, durability switched off (a test
  database is thrown away, so fsync only costs time).
- ``ExternalPostgres``: a server the user names by DSN instead (CI services,
  a container), never started or stopped by us.
- ``SmtpServer``: aiosmtpd in a thread of the test process, recording what
  it receives.

A cluster must never outlive the run, however the run ends: ``stop()`` on the
normal path, an ``atexit`` handler for an interpreter that exits without
unconfiguring, and a watcher process for a pytest that is killed (SIGTERM,
SIGKILL, OOM). The watcher is a ``sh`` in its own session reading a pipe whose
only writer is this process: the kernel closes the pipe when this process
dies, however it dies, and the watcher then stops the server and removes the
directory. A polling watcher (``kill -0 $PPID``) could be fooled by a reused
pid; ``PR_SET_PDEATHSIG`` does not survive ``pg_ctl``'s fork of the postmaster.
(A child forked without exec, e.g. multiprocessing's "fork", holds the pipe
too: then the clean-up waits for that child as well.)
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Protocol, Self
from urllib.parse import urlsplit

from .._address import (
    dsn_fields,
    dsn_with_address,
    free_port,
    mask_secrets,
    register_dsn,
    register_secret,
)
from .._exceptions import InvalidError, ServiceError

PG_BIN_GLOBS: Final = ("/usr/lib/postgresql/*/bin",)
"""Where Debian and Ubuntu put the server binaries (not on PATH there)."""

INSTALL_HINT: Final = (
    "install PostgreSQL (Debian/Ubuntu: apt-get install postgresql; "
    "macOS: brew install postgresql), or name a running server with "
    "--asyncfaults-postgres-dsn / ASYNCFAULTS_POSTGRES_DSN"
)
INITDB_TIMEOUT: Final = 60.0
START_TIMEOUT: Final = 30
"""``pg_ctl -t``: how long the postmaster may take to accept connections."""
STOP_TIMEOUT: Final = 10
"""``pg_ctl -t`` for stopping; after it, the postmaster is killed."""
PROCESS_SLACK: Final = 10.0
"""Extra seconds a pg_ctl run may take beyond its own ``-t`` before it is killed."""
PORT_ATTEMPTS: Final = 3
CONNECT_TIMEOUT: Final = 5.0

_SERVER_SETTINGS: Final = (
    "-c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
)
_WATCHER: Final = """
base=$1; data=$2; shift 2
read -r line || line=
[ "$line" = done ] && exit 0
"$@" >/dev/null 2>&1
if [ -f "$data/postmaster.pid" ]; then
    kill -KILL "$(head -n 1 "$data/postmaster.pid")" 2>/dev/null
    sleep 1
fi
rm -rf "$base"
"""
"""Run with the cluster's directories and its stop command; see the module docstring."""


class HasAddress(Protocol):
    """Anything with a TCP address: a ``Proxy``, a server, a ``ProxyInfo``."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


# -- DSNs ----------------------------------------------------------------------------------------


def _masked(dsn: str) -> str:
    """The DSN with its password hidden: error messages end up in CI logs."""
    return mask_secrets(dsn)


def parse_dsn(setting: str, dsn: str) -> tuple[str, int]:
    """The host and port of a ``postgresql://`` URL; ``setting`` names where it came from."""

    def invalid(why: str) -> InvalidError:
        return InvalidError(
            f"{setting}={_masked(dsn)!r} is not valid: {why} "
            f"(expected postgresql://user[:password]@host[:port]/dbname)"
        )

    parts = urlsplit(dsn.strip())
    if parts.scheme not in ("postgresql", "postgres"):
        raise invalid("it is not a postgresql:// URL")
    if "," in parts.netloc:
        raise invalid("it names several hosts; the proxy needs exactly one")
    if not parts.hostname:
        raise invalid("it names no host; the proxy needs a TCP host, not a Unix socket")
    if re.search(r"(^|&)(host|port)=", parts.query):
        raise invalid("its query sets host or port; put them before the database name")
    try:
        port = parts.port
    except ValueError:
        raise invalid("its port is not a number from 1 to 65535") from None
    if port == 0:
        raise invalid("its port is not a number from 1 to 65535")
    return parts.hostname, port or 5432


# -- PostgreSQL ----------------------------------------------------------------------------------


class PostgresServer(ABC):
    """A PostgreSQL server the tests can reach: ``.dsn`` directly, ``.dsn_via(proxy)``."""

    @property
    @abstractmethod
    def dsn(self) -> str:
        """How to reach the server directly, around every fault."""

    @property
    @abstractmethod
    def host(self) -> str: ...

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    def user(self) -> str:
        """The user of ``dsn``: what an app configured by separate variables logs in as."""
        return dsn_fields(self.dsn)["user"]

    @property
    def password(self) -> str:
        """The password of ``dsn`` (a cluster's own is random, made when it starts)."""
        return dsn_fields(self.dsn)["password"]

    @property
    def database(self) -> str:
        """The database of ``dsn``."""
        return dsn_fields(self.dsn)["database"]

    @property
    def address(self) -> str:
        """``host:port``, the form a proxy's upstream takes."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def dsn_via(self, proxy: HasAddress) -> str:
        """The DSN through ``proxy`` (e.g. ``faults.postgres``): what the app under test gets.

        Any object with ``host`` and ``port`` will do, so this works the same
        for a ``Proxy``, a plain proxy address or another server.
        """
        return dsn_with_address(self.dsn, proxy.host, proxy.port)

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ExternalPostgres(PostgresServer):
    """A server the user runs: we only route to it, never start, stop or change it."""

    def __init__(self, dsn: str, *, setting: str = "postgres dsn") -> None:
        self._dsn = dsn.strip()
        self._setting = setting
        self._host, self._port = parse_dsn(setting, self._dsn)
        register_dsn(self._dsn)  # never printed by us, whatever report carries it

    def __repr__(self) -> str:
        return f"<ExternalPostgres {_masked(self._dsn)}>"

    @property
    def dsn(self) -> str:
        return self._dsn

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> Self:
        """Check that something listens there, so a typo fails once, by name, at once."""
        try:
            socket.create_connection((self._host, self._port), timeout=CONNECT_TIMEOUT).close()
        except OSError as exc:
            raise ServiceError(
                f"the PostgreSQL server of {self._setting}={_masked(self._dsn)!r} is not "
                f"reachable at {self.address}: {exc}"
            ) from None
        return self

    def stop(self) -> None:
        """Nothing to do: the server is not ours."""


def find_pg_bin(globs: Sequence[str] | None = None, path: str | None = None) -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: the newest packaged version, else PATH.

    ``globs`` (default ``PG_BIN_GLOBS``, read at each call so tests can
    patch it) and ``path`` (default ``$PATH``) say where to look.
    """
    if globs is None:
        globs = PG_BIN_GLOBS

    def version(directory: str) -> tuple[int, ...]:
        numbers = re.findall(r"\d+", Path(directory).parent.name)
        return tuple(int(number) for number in numbers)

    candidates = sorted(
        (found for pattern in globs for found in glob.glob(pattern)), key=version, reverse=True
    )
    for candidate in candidates:
        directory = Path(candidate)
        if all(os.access(directory / tool, os.X_OK) for tool in ("initdb", "pg_ctl")):
            return directory
    initdb = shutil.which("initdb", path=path)
    if initdb is not None:
        # Homebrew and /usr/local/bin hold symlinks: pg_ctl finds postgres beside its target.
        directory = Path(os.path.realpath(initdb)).parent
        if os.access(directory / "pg_ctl", os.X_OK):
            return directory
    where = " or ".join([*globs, "PATH"])
    raise ServiceError(
        f"the PostgreSQL server binaries (initdb, pg_ctl) were not found in {where}; "
        f"the postgres_server fixture starts a throwaway cluster with them: {INSTALL_HINT}"
    )


@dataclass(frozen=True)
class _RunAs:
    """How to run PostgreSQL's programs: as ourselves, or as ``postgres`` when we are root.

    initdb and postgres refuse to run as root, on purpose; the data
    directory must belong to the user the server runs as.
    """

    prefix: tuple[str, ...] = ()
    uid: int = -1
    gid: int = -1
    groups: tuple[int, ...] = ()

    @classmethod
    def detect(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls()
        runuser = shutil.which("runuser")
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            user = None
        if runuser is None or user is None:
            raise ServiceError(
                "running as root, PostgreSQL must be started as another user: the "
                "postgres_server fixture uses `runuser -u postgres`, which needs util-linux's "
                "runuser and a `postgres` user (the postgresql package creates it)"
            )
        groups = tuple(os.getgrouplist("postgres", user.pw_gid))
        return cls((runuser, "-u", "postgres", "--"), user.pw_uid, user.pw_gid, groups)

    def unreachable(self, path: Path) -> Path | None:
        """The first directory above ``path`` the server's user cannot enter, if any."""
        if not self.prefix:
            return None
        for parent in path.parents:
            info = parent.stat()
            if info.st_uid == self.uid:
                bit = stat.S_IXUSR
            elif info.st_gid in self.groups:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not info.st_mode & bit:
                return parent
        return None


def _run(what: str, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run to the end within ``timeout``, or kill the whole process group and raise."""
    with subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # Ctrl-C in the terminal is ours to handle, not initdb's
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
        except BaseException as exc:  # the time is up, or Ctrl-C: nothing of it may linger
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise ServiceError(
                    f"{what} did not finish within {timeout} s: {shlex.join(argv)}"
                ) from None
            raise
        return subprocess.CompletedProcess(argv, process.returncode, output, None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # the postmaster's reaper is init: until it reaps, a dead one is a zombie
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


_LIVE: set[PostgresCluster] = set()
"""Clusters started and not yet stopped, for the ``atexit`` handler."""
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_live_clusters() -> None:
    with _LIVE_LOCK:
        clusters = list(_LIVE)
    for cluster in clusters:
        with contextlib.suppress(Exception):
            cluster.stop()


class PostgresCluster(PostgresServer):
    """A cluster of our own, in a temporary directory, gone after ``stop()``.

    The superuser ``postgres`` with a random password over TCP (in ``.dsn``):
    with trust authentication, any local user could connect as superuser and
    run programs as the server's OS user (``COPY ... TO PROGRAM``) while the
    tests run. The Unix socket sits in the cluster's own 0700 directory, so
    it trusts only the user the server runs as.
    """

    def __init__(self, bindir: Path | None = None) -> None:
        self._bindir = bindir
        self._base: Path | None = None
        self._port = 0
        self._password = ""
        self._watcher: subprocess.Popen[bytes] | None = None
        self._watcher_pipe: IO[bytes] | None = None
        self._run_as = _RunAs()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = f"port {self._port}" if self.running else "stopped"
        return f"<PostgresCluster {state}>"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        if not self.running:
            raise ServiceError("the PostgreSQL cluster is not running: call start() first")
        return self._port

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres:{self._password}@{self.host}:{self.port}/postgres"

    @property
    def running(self) -> bool:
        return self._base is not None and self._port != 0

    @property
    def directory(self) -> Path | None:
        """The temporary directory (data, socket, log) while the cluster exists."""
        return self._base

    @property
    def data_dir(self) -> Path | None:
        return None if self._base is None else self._base / "data"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid, from its pid file, while it runs."""
        if self._base is None:
            return None
        try:
            first = (self._base / "data" / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return None

    def start(self) -> Self:
        with self._lock:
            if self._base is not None:
                return self
            bindir = self._bindir = self._bindir or find_pg_bin()
            self._run_as = _RunAs.detect()
            base = Path(tempfile.mkdtemp(prefix="asyncfaults-pg-"))
            self._base = base
            with _LIVE_LOCK:
                _LIVE.add(self)
            try:
                self._start(bindir, base)
            except BaseException:
                self._stop()
                raise
            return self

    def _pg(self, bindir: Path, *args: str) -> list[str]:
        return [*self._run_as.prefix, str(bindir / args[0]), *args[1:]]

    def _start(self, bindir: Path, base: Path) -> None:
        run_as = self._run_as
        if run_as.prefix:
            os.chown(base, run_as.uid, run_as.gid)
            blocked = run_as.unreachable(base)
            if blocked is not None:
                raise ServiceError(
                    f"the postgres user cannot enter {blocked}, above the cluster's directory "
                    f"{base}: set TMPDIR to a directory it can reach, such as /tmp"
                )
        data = base / "data"
        self._start_watcher(bindir, base, data)
        self._password = secrets.token_urlsafe(18)  # URL-safe: no quoting in the DSN
        register_secret(self._password)  # never printed by us, whatever report carries it
        pwfile = base / "pwfile"
        pwfile.touch(0o600)
        pwfile.write_text(self._password + "\n")
        if run_as.prefix:
            os.chown(pwfile, run_as.uid, run_as.gid)
        try:
            initdb = _run(
                "initdb",
                self._pg(
                    bindir,
                    *("initdb", "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}"),
                    *("--auth-local=trust", "--auth-host=scram-sha-256"),
                    *("-E", "UTF8", "--locale=C", "--no-sync"),
                ),
                INITDB_TIMEOUT,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if initdb.returncode != 0:
            raise ServiceError(f"initdb failed (exit {initdb.returncode}):\n{initdb.stdout}")
        log = base / "postgres.log"
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            options = f"-p {port} -k {shlex.quote(str(base))} {_SERVER_SETTINGS}"
            seen = log.stat().st_size if log.exists() else 0
            started = _run(
                "pg_ctl start",
                self._pg(
                    bindir,
                    *("pg_ctl", "-D", str(data), "-l", str(log), "-o", options),
                    *("-w", "-t", str(START_TIMEOUT), "start"),
                ),
                START_TIMEOUT + PROCESS_SLACK,
            )
            if started.returncode == 0:
                self._port = port
                return
            tail = ""
            with contextlib.suppress(OSError), log.open("rb") as file:
                file.seek(seen)
                tail = file.read().decode(errors="replace")
            if "could not bind" in tail and attempt < PORT_ATTEMPTS:
                continue  # another process took the port between our probe and the bind
            raise ServiceError(
                f"PostgreSQL did not start (pg_ctl exit {started.returncode}):\n"
                f"{started.stdout}{tail}"
            )

    def _start_watcher(self, bindir: Path, base: Path, data: Path) -> None:
        read_end, write_end = os.pipe()  # both close-on-exec: no other child inherits them
        try:
            stop = self._pg(
                bindir,
                *("pg_ctl", "-D", str(data), "stop", "-m", "immediate"),
                *("-w", "-t", str(STOP_TIMEOUT)),
            )
            self._watcher = subprocess.Popen(
                ["sh", "-c", _WATCHER, "asyncfaults-pg-watcher", str(base), str(data), *stop],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # out of reach of the terminal's Ctrl-C
            )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        self._watcher_pipe = os.fdopen(write_end, "wb", buffering=0)

    def stop(self) -> None:
        """Stop the server (immediate shutdown), remove its directory. Safe to call again."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        base = self._base
        if base is None:
            return
        try:
            pid = self.pid
            bindir = self._bindir
            if pid is not None and bindir is not None:
                with contextlib.suppress(ServiceError):
                    _run(
                        "pg_ctl stop",
                        self._pg(
                            bindir,
                            *("pg_ctl", "-D", str(base / "data"), "stop", "-m", "immediate"),
                            *("-w", "-t", str(STOP_TIMEOUT)),
                        ),
                        STOP_TIMEOUT + PROCESS_SLACK,
                    )
                if _alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    deadline = time.monotonic() + STOP_TIMEOUT
                    while _alive(pid) and time.monotonic() < deadline:
                        time.sleep(0.05)
        finally:
            shutil.rmtree(base, ignore_errors=True)
            self._base = None
            self._port = 0
            self._release_watcher()
            with _LIVE_LOCK:
                _LIVE.discard(self)

    def _release_watcher(self) -> None:
        """Tell the watcher the work is done, so it exits without touching anything."""
        pipe, self._watcher_pipe = self._watcher_pipe, None
        watcher, self._watcher = self._watcher, None
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.write(b"done\n")
            pipe.close()
        if watcher is not None:
            try:
                watcher.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                watcher.kill()
                watcher.wait(timeout=STOP_TIMEOUT)


# -- SMTP ----------------------------------------------------------------------------------------


# -- what a run shares ---------------------------------------------------------------------------
