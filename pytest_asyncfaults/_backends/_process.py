"""``asyncfaults serve`` as a child process that cannot outlive its parent.

Process isolation is for apps whose loop holds the GIL for long stretches:
the engine then keeps its own time in its own process. Two guards make sure
the child never becomes an orphan, even when the parent is killed with
SIGKILL: on Linux the kernel sends it SIGKILL when the parent dies
(``PR_SET_PDEATHSIG``), and everywhere the child exits when its stdin (a
pipe only the parent holds) reaches end of file.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO, Final, final

from .._exceptions import EngineError, ServiceError

START_TIMEOUT: Final = 15.0
STOP_TIMEOUT: Final = 5.0
READY_LINE: Final = re.compile(r"asyncfaults serve: listening on (http://\S+)")
"""What ``serve`` prints on its first line of stdout once it accepts requests."""

_PR_SET_PDEATHSIG: Final = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@final
@dataclass
class ServeProcess:
    """A running ``asyncfaults serve`` child: its URL and how to stop it.

    Its stderr goes to a temporary file, never a pipe: a pipe nobody reads
    would fill up and block the child's loop, and every proxy with it.
    """

    url: str
    process: subprocess.Popen[str]
    stderr: IO[bytes]

    def errors(self) -> str:
        """What the child wrote on stderr so far."""
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def stop(self) -> None:
        """Ask it to stop (stdin closed, then SIGTERM), kill it if it lingers (bounded)."""
        process = self.process
        if process.poll() is None:
            with contextlib.suppress(OSError):
                assert process.stdin is not None
                process.stdin.close()
            try:
                process.wait(STOP_TIMEOUT / 2)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT / 2)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(STOP_TIMEOUT)
        for stream in (process.stdin, process.stdout, self.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _read_ready_line(stdout: IO[str], deadline: float) -> str | None:
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        buffered = ""
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                continue
            chunk = os.read(stdout.fileno(), 4096).decode()
            if not chunk:
                return None
            buffered += chunk
            match = READY_LINE.search(buffered)
            if match:
                return match[1]
    return None


SERVE_STACK: Final = ("starlette", "uvicorn")
"""What Toxiproxy's HTTP API (``asyncfaults serve``) is served with: the ``serve`` extra."""


def require_serve_stack(what: str) -> None:
    """Fail with what to install when the HTTP server stack is missing: it is an extra
    (``pytest-asyncfaults[serve]``), so that an app pinned to an old Starlette, or one on
    another framework, can install the plugin without it."""
    missing = [name for name in SERVE_STACK if importlib.util.find_spec(name) is None]
    if missing:
        raise ServiceError(
            f"{what} needs the HTTP server stack ({', '.join(SERVE_STACK)}), and "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: "
            f"pip install 'pytest-asyncfaults[serve]'"
        )


def start_serve_process(
    *, seed: int | None = None, host: str = "127.0.0.1", port: int = 0
) -> ServeProcess:
    """Start ``asyncfaults serve`` on a free loopback port and wait (bounded) until it serves."""
    require_serve_stack("the engine in a child process (--asyncfaults-engine=process)")
    command = [
        sys.executable,
        "-m",
        "pytest_asyncfaults",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--exit-on-stdin-eof",
    ]
    if seed is not None:
        command += ["--seed", str(seed)]
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - owned by the ServeProcess
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        close_fds=True,
    )
    child = ServeProcess("", process, stderr)
    assert process.stdout is not None
    url = _read_ready_line(process.stdout, time.monotonic() + START_TIMEOUT)
    if url is None:
        child.stop()
        error = child.errors().strip()
        raise EngineError(
            f"asyncfaults serve did not start within {START_TIMEOUT} s"
            + (f": {error.splitlines()[-1]}" if error else "")
        )
    child.url = url
    return child
