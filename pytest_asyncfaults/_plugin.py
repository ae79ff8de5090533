"""pytest glue: options, ini keys, the report header and the ``faults`` fixture.

Thin on purpose: everything here delegates to the hosts and the user API,
which work without pytest. Where the proxies live is chosen once per run:

- the embedded engine in a thread of the test process (the default);
- the same engine as an ``asyncfaults serve`` child process
  (``--asyncfaults-engine=process``), for apps that hold the GIL for long;
- a Toxiproxy HTTP API the user runs (``--toxiproxy-url``, ``TOXIPROXY_URL``
  or the ini key ``asyncfaults_toxiproxy_url``). That server may be shared,
  so every proxy made here gets a name no other run or worker uses, and only
  those proxies are ever changed or deleted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import pytest

from ._engine import Engine
from ._exceptions import AsyncFaultsError, InvalidError, NotFoundError
from ._faults import Faults, Proxy
from ._host import ProxyHost
from ._process import ServeProcess, start_serve_process
from ._spec import check_name, parse_address
from ._toxiproxy import ToxiproxyHost

ENGINE_MODES: Final = ("thread", "process")


@dataclass
class _Session:
    """What the run shares: the host, its child process if any, declared proxies."""

    host: ProxyHost[Any]
    prefix: str = ""
    child: ServeProcess | None = None
    declared: dict[str, Proxy] = field(default_factory=dict)

    def close(self) -> None:
        try:
            if self.prefix:  # a shared server: delete exactly what this run made
                for proxy in self.declared.values():
                    with contextlib.suppress(AsyncFaultsError):
                        self.host.delete_proxy(proxy.server_name)
            self.host.stop()
        finally:
            if self.child is not None:
                self.child.stop()


_SESSION_KEY = pytest.StashKey[_Session]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("asyncfaults", "fault injection for async apps (pytest-asyncfaults)")
    group.addoption(
        "--asyncfaults-seed",
        dest="asyncfaults_seed",
        default=None,
        help="seed for every random fault decision (toxicity, jitter, slicer sizes); "
        "default: the ini key asyncfaults_seed, else a fresh one shown in the header",
    )
    parser.addini(
        "asyncfaults_seed",
        "seed for every random fault decision (see --asyncfaults-seed)",
        default="",
    )
    group.addoption(
        "--asyncfaults-engine",
        dest="asyncfaults_engine",
        default=None,
        help="where the embedded engine runs: 'thread' (default) or 'process' "
        "(an `asyncfaults serve` child, for apps that hold the GIL for long)",
    )
    parser.addini(
        "asyncfaults_engine", "where the embedded engine runs: thread or process", default=""
    )
    group.addoption(
        "--toxiproxy-url",
        dest="toxiproxy_url",
        default=None,
        help="use the Toxiproxy HTTP API at this URL instead of the embedded engine "
        "(also: TOXIPROXY_URL, ini asyncfaults_toxiproxy_url)",
    )
    parser.addini(
        "asyncfaults_toxiproxy_url", "URL of a Toxiproxy server to use (see --toxiproxy-url)"
    )
    parser.addini(
        "asyncfaults_proxies",
        "proxies every test gets in the faults fixture, one 'name=host:port' a line",
        type="linelist",
        default=[],
    )


def _seed(config: pytest.Config) -> int | None:
    raw = config.getoption("asyncfaults_seed") or config.getini("asyncfaults_seed")
    if raw in (None, ""):
        return None
    try:
        return int(str(raw), 0)
    except ValueError:
        raise pytest.UsageError(
            f"asyncfaults_seed={raw!r} is not valid: expected an integer"
        ) from None


def _toxiproxy_url(config: pytest.Config) -> str | None:
    url = (
        config.getoption("toxiproxy_url")
        or os.environ.get("TOXIPROXY_URL")
        or config.getini("asyncfaults_toxiproxy_url")
    )
    if not url:
        return None
    if not str(url).startswith(("http://", "https://")):
        raise pytest.UsageError(f"toxiproxy url={url!r} is not valid: expected http://host:port")
    return str(url)


def _engine_mode(config: pytest.Config) -> str:
    mode = config.getoption("asyncfaults_engine") or config.getini("asyncfaults_engine")
    if not mode:
        return "thread"
    if mode not in ENGINE_MODES:
        raise pytest.UsageError(
            f"asyncfaults_engine={mode!r} is not valid: expected one of {', '.join(ENGINE_MODES)}"
        )
    if _toxiproxy_url(config) is not None:
        raise pytest.UsageError(
            f"asyncfaults_engine={mode!r} and a Toxiproxy URL were both given: "
            f"choose one (the URL already names where the proxies live)"
        )
    return str(mode)


def _declared_proxies(config: pytest.Config) -> dict[str, str]:
    declared: dict[str, str] = {}
    for line in config.getini("asyncfaults_proxies"):
        name, sep, upstream = line.partition("=")
        try:
            if not sep:
                raise InvalidError(
                    f"asyncfaults_proxies line {line!r} is not valid: expected name=host:port"
                )
            check_name("asyncfaults_proxies name", name.strip())
            parse_address(f"asyncfaults_proxies {name.strip()}", upstream.strip())
        except InvalidError as exc:
            raise pytest.UsageError(str(exc)) from None
        declared[name.strip()] = upstream.strip()
    return declared


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "asyncfaults(**settings): per-test settings of pytest-asyncfaults"
    )
    # Bad settings are a usage error at start, not an error in every fixture.
    _seed(config)
    _engine_mode(config)
    _declared_proxies(config)
    if _toxiproxy_url(config) is not None:
        # A server named by the user is checked now: if it is down, the run
        # stops at once with one message instead of erroring in every test.
        _session(config)


def pytest_report_header(config: pytest.Config) -> str:
    url = _toxiproxy_url(config)
    if url is not None:
        return f"asyncfaults: Toxiproxy server at {url}"
    seed = _seed(config)
    shown = "a fresh seed per run (shown when the engine starts)" if seed is None else seed
    where = "in a child process" if _engine_mode(config) == "process" else "in process"
    return f"asyncfaults: embedded fault engine {where}, seed {shown}"


def _start_session(config: pytest.Config) -> _Session:
    url = _toxiproxy_url(config)
    try:
        if url is not None:
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            prefix = f"af-{secrets.token_hex(4)}-{worker}-"
            return _Session(ToxiproxyHost(url).start(), prefix=prefix)
        if _engine_mode(config) == "process":
            child = start_serve_process(seed=_seed(config))
            try:
                return _Session(ToxiproxyHost(child.url).start(), child=child)
            except BaseException:
                child.stop()
                raise
        return _Session(Engine(seed=_seed(config)).start())
    except AsyncFaultsError as exc:
        raise pytest.UsageError(str(exc)) from None


def _session(config: pytest.Config) -> _Session:
    session = config.stash.get(_SESSION_KEY, None)
    if session is None:
        session = _start_session(config)
        config.stash[_SESSION_KEY] = session
        for name, upstream in _declared_proxies(config).items():
            info = session.host.create_proxy(session.prefix + name, upstream)
            session.declared[name] = Proxy(session.host, info, alias=name)
    return session


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(_SESSION_KEY, None)
    if session is not None:
        del config.stash[_SESSION_KEY]
        session.close()


@pytest.fixture(scope="session")
def asyncfaults_backend(pytestconfig: pytest.Config) -> ProxyHost[Any]:
    """Where this run's proxies live: the embedded engine, or a Toxiproxy API's client."""
    return _session(pytestconfig).host


@pytest.fixture
def faults(pytestconfig: pytest.Config) -> Iterator[Faults]:
    """The test's proxies: declared ones by name, plus any made with ``faults.create``.

    At the end of the test, proxies it created are deleted, and declared ones
    are left as they were found: enabled, with no toxic.
    """
    session = _session(pytestconfig)
    faults = Faults(session.host, session.declared, prefix=session.prefix)
    try:
        yield faults
    finally:
        faults.close()
        for proxy in session.declared.values():
            with contextlib.suppress(NotFoundError):
                for toxic in session.host.toxics(proxy.server_name):
                    session.host.remove_toxic(proxy.server_name, toxic.name)
                session.host.update_proxy(proxy.server_name, enabled=True)
