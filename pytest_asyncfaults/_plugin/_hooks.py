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
import inspect
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx
import pytest

from .._backends._base import ProxyHost
from .._backends._embedded import Engine
from .._backends._process import ServeProcess, start_serve_process
from .._backends._toxiproxy import ToxiproxyHost
from .._exceptions import AsyncFaultsError, InvalidError, NotFoundError
from .._faults import Faults, Proxy
from .._scenario._model import Scenario
from .._services._postgres import PostgresServer, Services, SmtpServer, parse_dsn
from .._settings import Settings, resolve
from .._toxics._spec import check_name, parse_address
from ._chaos import FIXTURE as CHAOS_FIXTURE
from ._chaos import SEED_KEY, ChaosMatrix, load_configured, path_setting, scenario_of

if TYPE_CHECKING:
    from .._app._runner import ASGIApp
    from .._tasks._monitor import TaskMonitor
    from ._harness import Harness

ENGINE_MODES: Final = ("thread", "process")
_SETTING_HELP: Final = {
    "settle": "default deadline of tasks.settle(), in seconds (default 5)",
    "startup_timeout": "bound on the app's lifespan startup, in seconds (default 10)",
    "shutdown_timeout": "bound on the app's lifespan shutdown, in seconds (default 10)",
    "leaks": "tasks of a test still running when it ends: fail (default), warn or off",
    "leak_grace": "how long the end of a test waits before calling a task a leak (default 0.2)",
    "never_retrieved": "a task failed and nobody read its exception: fail (default), warn, off",
    "not_logged": "background work failed with no ERROR log of it: fail (default), warn, off",
    "swallowed_cancel": "a cancelled task returned normally: fail (default), warn, off",
    "never_awaited": "a coroutine was never awaited: fail (default), warn, off",
    "lost": "a task was garbage-collected while pending: fail (default), warn, off",
    "blocked_loop": "the event loop did not turn for too long: fail (default), warn, off",
    "blocked_loop_threshold": "seconds without a turn of the loop that count as blocked (0.1)",
    "abandoned": "asyncio.gather left sibling tasks running: fail (default), warn, off",
    "allow": "findings to spare: task-name patterns or creation sites (file.py:line)",
}
_HARNESS_KEY = pytest.StashKey["Harness"]()
_SERVICES_KEY = pytest.StashKey[Services]()
_SERVICE_FIXTURES: Final = ("postgres_server", "smtp_server")


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
    group.addoption(
        "--asyncfaults-postgres-dsn",
        dest="asyncfaults_postgres_dsn",
        default=None,
        help="the postgres_server fixture uses this server (postgresql://user@host:port/db) "
        "instead of starting a cluster (also: ASYNCFAULTS_POSTGRES_DSN, "
        "ini asyncfaults_postgres_dsn)",
    )
    parser.addini(
        "asyncfaults_postgres_dsn",
        "PostgreSQL server for postgres_server (see --asyncfaults-postgres-dsn)",
    )
    parser.addini(
        "asyncfaults_proxies",
        "proxies every test gets in the faults fixture, one 'name=host:port' a line",
        type="linelist",
        default=[],
    )
    group.addoption(
        "--asyncfaults-app",
        dest="asyncfaults_app",
        default=None,
        help="the ASGI app under test, as package.module:attribute (ini asyncfaults_app)",
    )
    parser.addini("asyncfaults_app", "the ASGI app under test, as package.module:attribute")
    parser.addini(
        "asyncfaults_env",
        "environment the app reads, set before it is imported, one 'NAME=value' a line; "
        "values may name proxies: DB_PORT={postgres.port}",
        type="linelist",
        default=[],
    )
    group.addoption(
        "--asyncfaults-scenarios",
        dest="asyncfaults_scenarios",
        action="append",
        default=None,
        metavar="DIR",
        help="scenario files (*.toml) for tests marked chaos: a directory or a file, "
        "may be repeated (ini asyncfaults_scenarios)",
    )
    parser.addini(
        "asyncfaults_scenarios",
        "scenario directories or files for tests marked chaos, one a line, "
        "relative to the ini file",
        type="linelist",
        default=[],
    )
    group.addoption(
        "--asyncfaults-report",
        dest="asyncfaults_report",
        default=None,
        metavar="FILE",
        help="write the chaos matrix as JSON to FILE (ini asyncfaults_report)",
    )
    parser.addini("asyncfaults_report", "write the chaos matrix as JSON to this file")
    group.addoption(
        "--asyncfaults-timeline-dir",
        dest="asyncfaults_timeline_dir",
        default=None,
        metavar="DIR",
        help="where the timeline (HTML) of a failed test goes; default: pytest's cache "
        "directory, .pytest_cache/d/asyncfaults-timelines (ini asyncfaults_timeline_dir)",
    )
    parser.addini("asyncfaults_timeline_dir", "where the timeline (HTML) of a failed test goes")
    for name, text in _SETTING_HELP.items():
        flag = f"--asyncfaults-{name.replace('_', '-')}"
        many = name == "allow"
        group.addoption(
            flag,
            dest=f"asyncfaults_{name}",
            default=None,
            action="append" if many else "store",
            help=text,
        )
        if many:
            parser.addini(f"asyncfaults_{name}", text, type="linelist", default=[])
        else:
            parser.addini(f"asyncfaults_{name}", text)


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


def _postgres_dsn(config: pytest.Config) -> tuple[str, str] | None:
    """The DSN of a user's PostgreSQL server, and the setting that gave it, if any."""
    for setting, value in (
        ("--asyncfaults-postgres-dsn", config.getoption("asyncfaults_postgres_dsn")),
        ("ASYNCFAULTS_POSTGRES_DSN", os.environ.get("ASYNCFAULTS_POSTGRES_DSN")),
        ("asyncfaults_postgres_dsn", config.getini("asyncfaults_postgres_dsn")),
    ):
        if value:
            try:
                parse_dsn(setting, str(value))
            except InvalidError as exc:
                raise pytest.UsageError(str(exc)) from None
            return str(value), setting
    return None


def _services(config: pytest.Config) -> Services:
    services = config.stash.get(_SERVICES_KEY, None)
    if services is None:
        dsn = _postgres_dsn(config)
        services = config.stash[_SERVICES_KEY] = Services(*dsn) if dsn else Services()
    return services


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
    config.addinivalue_line(
        "markers",
        "chaos(*scenarios): run the test once per scenario file (all of them, or those "
        "whose names match the patterns given), checking each one's expectations",
    )
    # Bad settings are a usage error at start, not an error in every fixture.
    _seed(config)
    _engine_mode(config)
    _declared_proxies(config)
    _postgres_dsn(config)
    _env_lines(config)
    try:
        resolve({}, _option_reader(config), _ini_reader(config))
    except InvalidError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.pluginmanager.register(ChaosMatrix(config, load_configured(config)), "asyncfaults-chaos")
    if _toxiproxy_url(config) is not None:
        # A server named by the user is checked now: if it is down, the run
        # stops at once with one message instead of erroring in every test.
        _session(config)


def pytest_report_header(config: pytest.Config) -> list[str]:
    url = _toxiproxy_url(config)
    if url is not None:
        backend = f"asyncfaults: Toxiproxy server at {url}"
    else:
        seed = _seed(config)
        shown = "a fresh seed per run (shown when the engine starts)" if seed is None else seed
        where = "in a child process" if _engine_mode(config) == "process" else "in process"
        backend = f"asyncfaults: embedded fault engine {where}, seed {shown}"
    settings = resolve({}, _option_reader(config), _ini_reader(config))
    return [
        backend,
        f"asyncfaults: settle {settings.settle:g} s, leaks {settings.leaks} "
        f"(grace {settings.leak_grace:g} s), lifespan limits {settings.startup_timeout:g} s / "
        f"{settings.shutdown_timeout:g} s",
    ]


def _option_reader(config: pytest.Config) -> Callable[[str], object]:
    return lambda name: config.getoption(f"asyncfaults_{name}")


def _ini_reader(config: pytest.Config) -> Callable[[str], object]:
    return lambda name: config.getini(f"asyncfaults_{name}")


def _env_lines(config: pytest.Config) -> dict[str, str]:
    env = {}
    for line in config.getini("asyncfaults_env"):
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise pytest.UsageError(
                f"asyncfaults_env line {line!r} is not valid: expected NAME=value"
            )
        env[name.strip()] = value.strip()
    return env


def _start_session(config: pytest.Config) -> _Session:
    url = _toxiproxy_url(config)
    try:
        if url is not None:
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            prefix = f"af-{secrets.token_hex(4)}-{worker}-"
            return _Session(ToxiproxyHost(url).start(), prefix=prefix)
        if _engine_mode(config) == "process":
            config.stash[SEED_KEY] = _seed(config)
            child = start_serve_process(seed=_seed(config))
            try:
                return _Session(ToxiproxyHost(child.url).start(), child=child)
            except BaseException:
                child.stop()
                raise
        engine = Engine(seed=_seed(config))
        config.stash[SEED_KEY] = engine.seed
        return _Session(engine.start())
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
    services = config.stash.get(_SERVICES_KEY, None)
    try:
        if session is not None:
            del config.stash[_SESSION_KEY]
            session.close()
    finally:
        if services is not None:
            del config.stash[_SERVICES_KEY]
            services.close()


def _proxy_to(config: pytest.Config, name: str, address: str) -> None:
    """Declare the proxy ``faults.<name>`` to a service, as if the ini file named it."""
    session = _session(config)
    if name in session.declared:
        pytest.fail(
            f"asyncfaults_proxies declares a proxy named {name!r}, and the {name}_server "
            f"fixture makes one of that name to its server: rename or remove the ini line",
            pytrace=False,
        )
    info = session.host.create_proxy(session.prefix + name, address)
    session.declared[name] = Proxy(session.host, info, alias=name)


@pytest.fixture(scope="session")
def postgres_server(pytestconfig: pytest.Config) -> PostgresServer:
    """A PostgreSQL server for the run, and the proxy ``faults.postgres`` to it.

    A throwaway cluster from the system's binaries, started on first use and
    removed at the end of the run; or the server of ``asyncfaults_postgres_dsn``.
    ``.dsn`` reaches it directly; ``.dsn_via(faults.postgres)`` through the proxy.
    ``faults.postgres`` (and ``{postgres.port}`` in ``asyncfaults_env``) exist in
    the tests that use this fixture, or name it in ``usefixtures``.
    """
    try:
        server = _services(pytestconfig).postgres()
    except AsyncFaultsError as exc:
        pytest.fail(str(exc), pytrace=False)
    _proxy_to(pytestconfig, "postgres", server.address)
    return server


@pytest.fixture(scope="session")
def smtp_server(pytestconfig: pytest.Config) -> SmtpServer:
    """An SMTP server for the run (aiosmtpd, in a thread), and the proxy ``faults.smtp`` to it.

    ``.messages`` holds what it accepted since the current test started:
    it is emptied before each test.
    """
    try:
        server = _services(pytestconfig).smtp()
    except AsyncFaultsError as exc:
        pytest.fail(str(exc), pytrace=False)
    _proxy_to(pytestconfig, "smtp", server.address)
    return server


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    services = item.config.stash.get(_SERVICES_KEY, None)
    if services is not None:
        services.before_test()


@pytest.fixture(scope="session")
def asyncfaults_backend(pytestconfig: pytest.Config) -> ProxyHost[Any]:
    """Where this run's proxies live: the embedded engine, or a Toxiproxy API's client."""
    return _session(pytestconfig).host


@pytest.fixture
def faults(request: pytest.FixtureRequest) -> Iterator[Faults]:
    """The test's proxies: declared ones by name, plus any made with ``faults.create``.

    At the end of the test, proxies it created are deleted, and declared ones
    are left as they were found: enabled, with no toxic.
    """
    for fixture in _SERVICE_FIXTURES:  # the test's services declare their proxies first
        if fixture in request.fixturenames:
            request.getfixturevalue(fixture)
    session = _session(request.config)
    faults = Faults(session.host, session.declared, prefix=session.prefix)
    try:
        yield faults
    finally:
        faults.close()
        for proxy in session.declared.values():
            with contextlib.suppress(NotFoundError):
                for toxic in session.host.toxics(proxy.server_name):
                    session.host.remove_toxic(proxy.server_name, toxic.name)
                proxy.refresh(session.host.update_proxy(proxy.server_name, enabled=True))


@pytest.fixture
def asyncfaults_settings(request: pytest.FixtureRequest) -> Settings:
    """This test's settings: its marker over the command line over the ini file."""
    kwargs: dict[str, object] = {}
    for marker in reversed(list(request.node.iter_markers("asyncfaults"))):
        kwargs.update(marker.kwargs)
    try:
        return resolve(kwargs, _option_reader(request.config), _ini_reader(request.config))
    except InvalidError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def tasks(
    request: pytest.FixtureRequest, asyncfaults_settings: Settings, faults: Faults
) -> Iterator[TaskMonitor]:
    """Every task the test's loop creates while it runs, and ``await tasks.settle()``."""
    from .._tasks._monitor import TaskMonitor
    from ._harness import Harness, describe_faults

    monitor = TaskMonitor(
        default_within=asyncfaults_settings.settle,
        connections=faults.clients_open,
        faults_summary=lambda: describe_faults(faults),
    ).install()
    harness = Harness(monitor, asyncfaults_settings, request.node, faults)
    harness.timeline_dir = _timeline_dir(request.config)
    harness.scenario = scenario_of(request.node)
    if harness.scenario is not None and harness.scenario.expect.settle is not None:
        monitor.default_within = harness.scenario.expect.settle  # tasks.settle() in the body
    request.node.stash[_HARNESS_KEY] = harness
    try:
        yield monitor
    finally:
        monitor.uninstall()
        del request.node.stash[_HARNESS_KEY]


def harness_of(item: pytest.Item) -> Harness | None:
    """The plugin's part of a test that uses ``tasks`` (or ``app_client``), if any."""
    return item.stash.get(_HARNESS_KEY, None)


def _timeline_dir(config: pytest.Config) -> Path:
    given = path_setting(config, "timeline_dir")
    if given is not None:
        return given
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("asyncfaults-timelines"))
    return Path(tempfile.gettempdir()) / "asyncfaults-timelines"


@pytest.fixture
def chaos_scenario(request: pytest.FixtureRequest) -> Scenario:
    """The scenario a ``@pytest.mark.chaos`` test runs under (one run per scenario file).

    Its faults go on when the test body starts and come off once its
    expectations are checked, after the body; ``tasks.settle()`` in the body
    waits for the scenario's ``settle`` deadline by default.
    """
    scenario = scenario_of(request.node)
    if scenario is None:
        pytest.fail(
            f"the {CHAOS_FIXTURE} fixture is given by @pytest.mark.chaos: mark the test "
            f"instead of asking for the fixture",
            pytrace=False,
        )
    return scenario


@pytest.fixture
def asyncfaults_env(pytestconfig: pytest.Config, faults: Faults) -> Iterator[dict[str, str]]:
    """The ini key ``asyncfaults_env``, formatted with the test's proxies, set in os.environ.

    Override it to return your own mapping; the previous environment comes back after.
    """
    env = {}
    for name, template in _env_lines(pytestconfig).items():
        try:
            env[name] = faults.fill(template, field=f"asyncfaults_env {name}")
        except InvalidError as exc:
            pytest.fail(str(exc), pytrace=False)
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def asgi_app(pytestconfig: pytest.Config, asyncfaults_env: dict[str, str]) -> ASGIApp:
    """The ASGI app under test: override this fixture, or name it in ``asyncfaults_app``."""
    from .._app._runner import load_app

    spec = pytestconfig.getoption("asyncfaults_app") or pytestconfig.getini("asyncfaults_app")
    if not spec:
        pytest.fail(
            "no app to test: override the asgi_app fixture to return your ASGI app, or set "
            "the ini key asyncfaults_app = 'package.module:app'",
            pytrace=False,
        )
    try:
        return load_app(str(spec))
    except InvalidError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def app_client(
    request: pytest.FixtureRequest,
    asgi_app: ASGIApp,
    tasks: TaskMonitor,
    asyncfaults_settings: Settings,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` talking to the app in process, served the way uvicorn does."""
    from .._app._runner import AppRunner, make_client

    harness = request.node.stash[_HARNESS_KEY]
    harness.runner = AppRunner(
        asgi_app,
        tasks,
        startup_timeout=asyncfaults_settings.startup_timeout,
        shutdown_timeout=asyncfaults_settings.shutdown_timeout,
    )
    client = harness.client = make_client(harness.runner)
    return client


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Run an async test that uses the plugin inside its harness, on its own loop."""
    harness = item.stash.get(_HARNESS_KEY, None)
    test = getattr(item, "obj", None)
    if scenario_of(item) is not None and (harness is None or not inspect.iscoroutinefunction(test)):
        pytest.fail(
            f"{item.nodeid} is marked chaos, but the scenario cannot run around it: a chaos "
            f"test is an async def that uses the tasks or app_client fixture",
            pytrace=False,
        )
    if harness is None or not inspect.iscoroutinefunction(test):
        return (yield)
    assert isinstance(item, pytest.Function)
    item.obj = harness.wrap(test)
    try:
        return (yield)
    finally:
        item.obj = test
