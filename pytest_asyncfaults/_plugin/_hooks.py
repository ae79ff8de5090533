"""The plugin's hooks: the settings checked at start, the report header, the run's end,
and an async test that uses the plugin run inside its harness.
"""

from __future__ import annotations

import gc
import inspect
import sys
import time
import traceback
import warnings
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .._exceptions import InvalidError
from .._settings import resolve
from .._tasks._threads import guard_exit
from ._chaos import ChaosMatrix, load_configured, scenario_of
from ._keys import (
    HARNESS_KEY,
    SEED_KEY,
    SERVICES_KEY,
    SESSION_KEY,
    SET_ASIDE_KEY,
    TIMEOUT_TIMER_KEY,
)
from ._options import (
    app_spec,
    check_report_path,
    declared_proxies,
    engine_mode,
    env_lines,
    ini_reader,
    option_reader,
    postgres_dsn,
    run_seed,
    seed_was_given,
    toxiproxy_url,
)
from ._secrets import mask_report
from ._session import run_session

if TYPE_CHECKING:
    pass


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
    run_seed(config)
    toxiproxy_url(config)
    engine_mode(config)
    app_spec(config)
    declared_proxies(config)
    postgres_dsn(config)
    env_lines(config)
    check_report_path(config)
    try:
        resolve({}, option_reader(config), ini_reader(config))
    except InvalidError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.pluginmanager.register(ChaosMatrix(config, load_configured(config)), "asyncfaults-chaos")
    if toxiproxy_url(config) is not None:
        # A server named by the user is checked now: if it is down, the run
        # stops at once with one message instead of erroring in every test.
        run_session(config)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Once every fixture of a test that set the heap aside is torn down (its loop closed
    too, which lets go of the app's sockets), its garbage is collected: what that finds
    (an unclosed connection, an exception in a ``__del__``) is this test's, said as a
    warning of its tear-down, not of whichever test the collector runs in next."""
    if not item.stash.get(SET_ASIDE_KEY, False):
        return
    # Every fixture is finalised, but pytest keeps their values on the item until the
    # protocol ends (it drops them itself right after): let go of them now.
    funcargs = getattr(item, "funcargs", None)
    if isinstance(funcargs, dict):
        funcargs.clear()
    found: list[Any] = []
    previous = sys.unraisablehook
    sys.unraisablehook = found.append
    try:
        gc.collect()
    finally:
        sys.unraisablehook = previous
    for unraisable in found:
        where = f"Exception ignored in: {unraisable.object!r}" if unraisable.object else ""
        trace = "".join(
            traceback.format_exception(
                unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback
            )
        )
        warnings.warn(pytest.PytestUnraisableExceptionWarning(f"{where}\n{trace}"), stacklevel=1)


def pytest_report_header(config: pytest.Config) -> list[str]:
    url = toxiproxy_url(config)
    if url is not None:
        backend = f"asyncfaults: Toxiproxy server at {url}"
    else:
        seed = run_seed(config)
        shown = (
            str(seed)
            if seed_was_given(config)
            else f"{seed} (fresh: repeat with --asyncfaults-seed={seed})"
        )
        where = "in a child process" if engine_mode(config) == "process" else "in process"
        backend = f"asyncfaults: embedded fault engine {where}, seed {shown}"
    settings = resolve({}, option_reader(config), ini_reader(config))
    return [
        backend,
        f"asyncfaults: settle {settings.settle:g} s, leaks {settings.leaks} "
        f"(grace {settings.leak_grace:g} s), lifespan limits {settings.startup_timeout:g} s / "
        f"{settings.shutdown_timeout:g} s",
    ]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist's controller starting a worker: every worker draws with the run's seed."""
    node.workerinput["asyncfaults_seed"] = run_seed(node.config)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test that had proxies says the seed its faults were drawn from; and no
    report carries a password the plugin knows (a DSN in an assertion, a log line)."""
    report = yield
    if report.failed and "faults" in getattr(item, "fixturenames", ()):
        seed = item.config.stash.get(SEED_KEY, None)
        if seed is not None and toxiproxy_url(item.config) is None:
            report.sections.append(
                ("asyncfaults", f"seed {seed}: repeat this run with --asyncfaults-seed={seed}")
            )
    mask_report(report)
    return report


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # The outermost session finishes last: its status is the process's.
    guard_exit(int(exitstatus))
    if "pytest_asyncfaults._tasks._heap" in sys.modules:  # only where a test set it aside
        from .._tasks._heap import thaw

        thaw()


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    services = config.stash.get(SERVICES_KEY, None)
    try:
        if session is not None:
            del config.stash[SESSION_KEY]
            session.close()
    finally:
        if services is not None:
            del config.stash[SERVICES_KEY]
            services.close()


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> None:
    """pytest-timeout's timer for this test (its hook, called when it starts the timer):
    the harness keeps its own deadline inside it, so its report comes first."""
    timeout = getattr(settings, "timeout", None)
    if isinstance(timeout, int | float) and timeout > 0:
        item.stash[TIMEOUT_TIMER_KEY] = (time.monotonic(), float(timeout))


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: Any, request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """Apply whatever ``asyncfaults_env`` returned (the default, or a user's override), and
    check that the app ``asgi_app`` returned was not configured before it."""
    value = yield
    if fixturedef.argname == "asyncfaults_env":
        from ._env import apply_env

        apply_env(request, fixturedef, value)
    elif fixturedef.argname == "asgi_app":
        from ._env import check_app_import

        check_app_import(request, value)
    return value


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    services = item.config.stash.get(SERVICES_KEY, None)
    if services is not None:
        services.before_test()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Run an async test that uses the plugin inside its harness, on its own loop."""
    harness = item.stash.get(HARNESS_KEY, None)
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
    except (KeyboardInterrupt, SystemExit) as exc:
        # Raised inside a task of the app, it went through the event loop and out of
        # the runner: that is this test's failure, not the end of the session.
        report = harness.interrupted_by_the_app(exc)
        if report is None:
            raise  # a real Ctrl-C, or pytest.exit(): the session ends
    finally:
        item.obj = test
    pytest.fail(report, pytrace=False)  # outside the handler: the report is the message
