"""``asyncfaults serve``: the Toxiproxy API and the engine's proxies served on one loop.

The API itself (``_toxiproxy._api``) is a Starlette app over the engine core;
this is the command around it: the listening socket (loopback unless asked),
uvicorn on the engine's precise loop, the config file's proxies, signals and
``--exit-on-stdin-eof`` (how a parent that dies takes its child with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Generator
from typing import Final, final

import uvicorn

from .._address import format_address, is_loopback, valid_host
from .._engine._core import FaultCore
from .._engine._loop import new_event_loop
from .._exceptions import InvalidError, ListenError
from .._toxiproxy._api import toxiproxy_api
from .._toxiproxy._config import ProxyConfig, load_proxy_config

DEFAULT_PORT: Final = 8474


SHUTDOWN_GRACE: Final = 2
"""Seconds open API connections get to finish when the server stops."""


_PROG: Final = "asyncfaults serve"


def _say(message: str) -> None:
    """One line on stderr: stdout carries only the ready line."""
    print(f"{_PROG}: {message}", file=sys.stderr, flush=True)


def _bind(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound before the loop starts, for a clean error."""
    host = host.strip("[]")
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP,
    # and without it Nagle + delayed ACK add 40 ms to every response with a body.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


@final
class _UvicornServer(uvicorn.Server):
    """uvicorn, minus its own signal handling, announcing when it serves.

    ``uvicorn.Server.serve`` re-raises a captured SIGTERM once it has shut
    down, so the process would die by the signal instead of exiting 0 with
    its proxies closed; the signals are ours to handle instead.
    """

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_started()

    def request_exit(self) -> None:
        if self.should_exit:
            self.force_exit = True  # a second signal: stop waiting for open requests
        self.should_exit = True


def _watch_stdin(loop: asyncio.AbstractEventLoop, on_eof: Callable[[], None]) -> Callable[[], None]:
    """Call ``on_eof`` when stdin reaches end of file; return how to stop watching.

    The parent holds the other end of the pipe: when it dies, however it dies,
    the pipe closes and we exit instead of becoming an orphan.
    """
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        loop.call_soon(on_eof)  # no stdin at all: it is at its end already
        return lambda: None

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            on_eof()

    try:
        loop.add_reader(fd, readable)
    except (OSError, ValueError):
        # Not pollable (a regular file, /dev/null): reading it cannot block for long.
        with contextlib.suppress(OSError):
            while os.read(fd, 65536):
                pass
        loop.call_soon(on_eof)
        return lambda: None

    def stop() -> None:
        loop.remove_reader(fd)

    return stop


async def _serve(
    sock: socket.socket,
    *,
    seed: int,
    proxies: list[ProxyConfig],
    config_path: str | None,
    exit_on_stdin_eof: bool,
    allow_remote: bool = False,
) -> int:
    loop = asyncio.get_running_loop()
    core = FaultCore(loop, seed, allow_remote=allow_remote)
    try:
        for number, entry in enumerate(proxies, 1):
            try:
                await core.create_proxy(entry.name, entry.upstream, entry.listen, entry.enabled)
            except ListenError as exc:
                sock.close()
                _say(f"{config_path}: entry {number} ({entry.name!r}): {exc}")
                return 1
            except InvalidError as exc:  # a listen address beyond loopback, not allowed
                sock.close()
                _say(f"{config_path}: entry {number} ({entry.name!r}): {exc}")
                return 2
        host, port = sock.getsockname()[:2]
        ready = f"{_PROG}: listening on http://{format_address(host, port)} (seed {seed})"

        def announce() -> None:
            with contextlib.suppress(OSError):
                print(ready, flush=True)

        config = uvicorn.Config(
            toxiproxy_api(core),
            http="auto",  # httptools (the serve extra has it), else h11
            ws="none",
            lifespan="off",
            access_log=False,
            log_level="warning",
            log_config=None,
            server_header=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
        )
        server = _UvicornServer(config, announce)
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, server.request_exit)
        stop_watching = (
            _watch_stdin(loop, server.request_exit) if exit_on_stdin_eof else (lambda: None)
        )
        try:
            await server.serve(sockets=[sock])
        finally:
            stop_watching()
            for sig in signals:
                loop.remove_signal_handler(sig)
        return 0
    finally:
        sock.close()
        core.close()
        await asyncio.sleep(0)  # let the aborted connections run their callbacks


def run_serve(
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    config: str | None = None,
    seed: int | None = None,
    allow_remote: bool = False,
    exit_on_stdin_eof: bool = False,
) -> int:
    """``asyncfaults serve``; returns the exit status (0 stopped, 1 cannot listen, 2 usage).

    Prints one ready line on stdout once it accepts requests; every other
    word goes to stderr, so a parent can wait for that line alone.
    """
    if not valid_host(host.strip("[]")):
        _say(f"--host={host!r} is not valid: expected an IP address or a host name")
        return 2
    if not allow_remote and not is_loopback(host):
        _say(
            f"refusing to serve on {host!r}: not a loopback address, and the API lets anyone "
            f"who reaches it open proxies and cut connections; use --allow-remote to serve "
            f"on it anyway"
        )
        return 2
    proxies: list[ProxyConfig] = []
    if config is not None:
        try:
            proxies = load_proxy_config(config)
        except InvalidError as exc:
            _say(str(exc))
            return 2
    try:
        sock = _bind(host, port)
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        _say(f"cannot listen on {format_address(host.strip('[]'), port)}: {reason or exc}")
        return 1
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stderr,
            level=logging.WARNING,
            format=f"{_PROG}: %(levelname)s %(name)s: %(message)s",
        )
    chosen_seed = secrets.randbits(32) if seed is None else seed
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(
                _serve(
                    sock,
                    seed=chosen_seed,
                    proxies=proxies,
                    config_path=config,
                    exit_on_stdin_eof=exit_on_stdin_eof,
                    allow_remote=allow_remote,
                )
            )
    except KeyboardInterrupt:
        # Ctrl+C before our handler was in place: the proxies are closed already.
        return 0
    finally:
        sock.close()
