"""The fixtures: the test's proxies, its task monitor, its app and a client bound to it.

Each fixture is thin: it reads the test's settings and hands the work to the
user API, the task monitor and the app runner, which know nothing of pytest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .._exceptions import AsyncFaultsError, InvalidError, NotFoundError
from .._settings import resolve
from ._chaos import FIXTURE as CHAOS_FIXTURE
from ._chaos import scenario_of
from ._keys import HARNESS_KEY, SET_ASIDE_KEY, fail_once
from ._options import (
    app_spec,
    declared_proxies,
    env_lines,
    ini_reader,
    named_proxies,
    option_reader,
    timeline_dir,
)
from ._session import SERVICE_FIXTURES, proxy_to, run_services, run_session

if TYPE_CHECKING:
    import httpx

    from .._app._runner import ASGIApp
    from .._backends._base import ProxyHost
    from .._faults import Faults
    from .._scenario._model import Scenario
    from .._services._postgres import PostgresServer
    from .._services._smtp import SmtpServer
    from .._settings import Settings
    from .._tasks._monitor import TaskMonitor


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
        server = run_services(pytestconfig).postgres()
    except AsyncFaultsError as exc:
        raise fail_once(str(exc)) from None
    proxy_to(pytestconfig, "postgres", server.address, server.dsn)
    return server


@pytest.fixture(scope="session")
def smtp_server(pytestconfig: pytest.Config) -> SmtpServer:
    """An SMTP server for the run (aiosmtpd, in a thread), and the proxy ``faults.smtp`` to it.

    ``.messages`` holds what it accepted since the current test started:
    it is emptied before each test.
    """
    try:
        server = run_services(pytestconfig).smtp()
    except AsyncFaultsError as exc:
        raise fail_once(str(exc)) from None
    proxy_to(pytestconfig, "smtp", server.address)
    return server


@pytest.fixture(scope="session")
def asyncfaults_backend(pytestconfig: pytest.Config) -> ProxyHost[Any]:
    """Where this run's proxies live: the embedded engine, or a Toxiproxy API's client."""
    return run_session(pytestconfig).host


@pytest.fixture
def faults(request: pytest.FixtureRequest) -> Iterator[Faults]:
    """The test's proxies: declared ones by name, plus any made with ``faults.create``.

    At the end of the test, proxies it created are deleted, and declared ones
    are left as they were found: enabled, with no toxic.
    """
    for fixture in services_wanted(request):  # the test's services declare their proxies first
        request.getfixturevalue(fixture)
    session = run_session(request.config)
    from .._faults import Faults

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
    args: tuple[object, ...] = ()
    for marker in reversed(list(request.node.iter_markers("asyncfaults"))):
        kwargs.update(marker.kwargs)
        args += marker.args
    try:
        return resolve(
            kwargs, option_reader(request.config), ini_reader(request.config), marker_args=args
        )
    except InvalidError as exc:
        raise fail_once(str(exc)) from None


@pytest.fixture
def tasks(
    request: pytest.FixtureRequest, asyncfaults_settings: Settings, faults: Faults
) -> Iterator[TaskMonitor]:
    """Every task the test's loop creates while it runs, and ``await tasks.settle()``."""
    from .._run import describe_faults
    from .._tasks._heap import set_aside
    from .._tasks._monitor import TaskMonitor
    from ._harness import Harness

    set_aside()  # the checks at the end look at what this test made, and quickly
    request.node.stash[SET_ASIDE_KEY] = True
    monitor = TaskMonitor(
        default_within=asyncfaults_settings.settle,
        connections=faults.clients_open,
        ports=faults.ports,
        faults_summary=lambda: describe_faults(faults),
        allow=asyncfaults_settings.allow,
        library_tasks=asyncfaults_settings.library_tasks == "watch",
    ).install()
    scenario = scenario_of(request.node)
    harness = Harness(monitor, asyncfaults_settings, request.node, faults, scenario)
    harness.timeline_dir = timeline_dir(request.config)
    if scenario is not None and scenario.expect.settle is not None:
        monitor.default_within = scenario.expect.settle  # tasks.settle() in the body
    request.node.stash[HARNESS_KEY] = harness
    try:
        yield monitor
    finally:
        monitor.uninstall()
        del request.node.stash[HARNESS_KEY]


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
def asyncfaults_env(pytestconfig: pytest.Config, faults: Faults) -> dict[str, str]:
    """The environment the app reads, set in ``os.environ`` before the app is imported.

    By default the ini key ``asyncfaults_env`` (and ``--asyncfaults-env``), each value
    filled in with the test's proxies: ``DATABASE_URL={postgres.dsn}``. Override it to
    return your own mapping: whatever this fixture returns is applied, and the previous
    environment comes back after the test.
    """
    env = {}
    for name, template in env_lines(pytestconfig).items():
        try:
            env[name] = faults.fill(template, field=f"asyncfaults_env {name}")
        except InvalidError as exc:
            raise fail_once(str(exc)) from None
    return env


def services_wanted(request: pytest.FixtureRequest) -> list[str]:
    """The service fixtures a test needs: those it names, and those its environment names
    (``{postgres.dsn}`` in ``asyncfaults_env`` starts ``postgres_server``)."""
    wanted: list[str] = [f for f in SERVICE_FIXTURES if f in request.fixturenames]
    if "asyncfaults_env" in request.fixturenames:
        declared = declared_proxies(request.config)
        for name in sorted(named_proxies(env_lines(request.config))):
            fixture = f"{name}_server"
            if fixture in SERVICE_FIXTURES and name not in declared and fixture not in wanted:
                wanted.append(fixture)
    return wanted


@pytest.fixture
def asgi_app(pytestconfig: pytest.Config, asyncfaults_env: dict[str, str]) -> ASGIApp:
    """The ASGI app under test: override this fixture, or name it in ``asyncfaults_app``."""
    from .._app._runner import load_app

    given = app_spec(pytestconfig)
    if given is None:
        pytest.fail(
            "no app to test: override the asgi_app fixture to return your ASGI app, or set "
            "the ini key asyncfaults_app = 'package.module:app'",
            pytrace=False,
        )
    spec, where = given
    try:
        return load_app(spec, field=where)
    except InvalidError as exc:
        raise fail_once(str(exc)) from None


@pytest.fixture
def app_client(
    request: pytest.FixtureRequest,
    asgi_app: ASGIApp,
    tasks: TaskMonitor,
    asyncfaults_settings: Settings,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` talking to the app in process, served the way uvicorn does."""
    from .._app._runner import AppRunner, make_client

    harness = request.node.stash[HARNESS_KEY]
    harness.runner = AppRunner(
        asgi_app,
        tasks,
        startup_timeout=asyncfaults_settings.startup_timeout,
        shutdown_timeout=asyncfaults_settings.shutdown_timeout,
    )
    client = harness.client = make_client(harness.runner)
    return client
