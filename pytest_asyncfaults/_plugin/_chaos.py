"""The scenario matrix: ``@pytest.mark.chaos`` tests run once per scenario file.

Each chaos test is parametrized with the scenarios (``[db_blackhole]`` in its
id, so ``-k db_blackhole`` selects one); the harness puts the scenario's
faults on when the test body starts and checks its expectations after it.
What each run came to travels on the test reports as user properties
(``asyncfaults_scenario``, ``asyncfaults_result``, ``asyncfaults_reason``,
``asyncfaults_timeline``): JUnit XML writes them as ``<property>`` elements,
and they reach the controller under pytest-xdist, which prints the matrix
and writes the JSON report.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

import pytest

from .._exceptions import ScenarioError
from .._scenario._matrix import MatrixRow, dump_document, format_matrix, matrix_document
from ._keys import SEED_KEY, harness_of

FIXTURE: Final = "chaos_scenario"
"""The parameter chaos tests get: the ``Scenario`` they run under."""
_PROPERTY: Final = "asyncfaults_"

if TYPE_CHECKING:
    from .._scenario._model import Scenario


def scenario_paths(config: pytest.Config) -> list[Path]:
    """Scenario directories or files: the command line's (from the current directory),
    else the ini file's (from the ini file's directory)."""
    given = config.getoption("asyncfaults_scenarios") or []
    if given:
        return [Path(path) for path in given]
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    return [base / line for line in config.getini("asyncfaults_scenarios")]


@final
class ChaosMatrix:
    """Parametrizes chaos tests, and reports what each scenario did to each test."""

    def __init__(self, config: pytest.Config, scenarios: Sequence[Scenario]) -> None:
        self.config = config
        self.scenarios = list(scenarios)
        self.rows: dict[str, MatrixRow] = {}
        self._durations: dict[str, float] = {}

    # -- collection ------------------------------------------------------------------------

    def select(self, patterns: Sequence[object], where: str) -> list[Scenario]:
        if not self.scenarios:
            raise pytest.UsageError(
                f"{where} is marked chaos, but no scenarios are configured: pass "
                f"--asyncfaults-scenarios DIR or set the ini key asyncfaults_scenarios"
            )
        if not patterns:
            return self.scenarios
        chosen = []
        for pattern in patterns:
            if not isinstance(pattern, str):
                raise pytest.UsageError(
                    f"{where}: @pytest.mark.chaos({pattern!r}) is not valid: expected scenario "
                    f"names or patterns (db_*)"
                )
            matched = [s for s in self.scenarios if fnmatch.fnmatchcase(s.name, pattern)]
            if not matched:
                known = ", ".join(s.name for s in self.scenarios)
                raise pytest.UsageError(
                    f"{where}: @pytest.mark.chaos({pattern!r}) matches no scenario: "
                    f"expected one of {known}"
                )
            chosen += [s for s in matched if s not in chosen]
        return chosen

    @pytest.hookimpl
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        marker = metafunc.definition.get_closest_marker("chaos")
        if marker is None:
            return
        try:
            scenarios = self.select(marker.args, metafunc.definition.nodeid)
        except pytest.UsageError as exc:
            # Raised while its module is collected, a usage error is that collector's
            # crash: its message under a page of pytest's and pluggy's frames. A
            # collection error is the message alone (and the run stops before any test).
            raise pytest.Collector.CollectError(str(exc)) from None
        if FIXTURE not in metafunc.fixturenames:
            metafunc.fixturenames.append(FIXTURE)
        metafunc.parametrize(
            FIXTURE, scenarios, ids=[scenario.name for scenario in scenarios], indirect=True
        )

    # -- reporting -------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        scenario = scenario_of(item)
        if scenario is None:
            return report
        properties = dict(item.user_properties)
        if report.when == "setup" and f"{_PROPERTY}scenario" not in properties:
            item.user_properties += [
                (f"{_PROPERTY}scenario", scenario.name),
                (f"{_PROPERTY}test", _test_label(item)),
            ]
        if report.when == "call" or (report.when == "setup" and not report.passed):
            verdict = _verdict_of(item)
            if report.passed:
                outcome, reason = "passed", ""
            elif report.skipped:
                outcome, reason = "skipped", _skip_reason(report)
            else:
                outcome = "failed" if report.when == "call" else "error"
                reason = (verdict.reason if verdict is not None else "") or _first_line(report)
            item.user_properties += [
                (f"{_PROPERTY}result", outcome),
                (f"{_PROPERTY}reason", reason),
            ]
            if verdict is not None and verdict.timeline is not None:
                item.user_properties.append((f"{_PROPERTY}timeline", str(verdict.timeline)))
        passed_until_teardown = dict(report.user_properties).get(f"{_PROPERTY}result") == "passed"
        if report.when == "teardown" and report.failed and passed_until_teardown:
            report.user_properties = [
                (name, value)
                for name, value in report.user_properties
                if name not in (f"{_PROPERTY}result", f"{_PROPERTY}reason")
            ] + [
                (f"{_PROPERTY}result", "error"),
                (f"{_PROPERTY}reason", "teardown: " + _first_line(report)),
            ]
        return report

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._durations[report.nodeid] = self._durations.get(report.nodeid, 0.0) + report.duration
        if report.when != "teardown":
            return
        properties = dict(report.user_properties)
        scenario = properties.get(f"{_PROPERTY}scenario")
        if scenario is None:
            return
        timeline = properties.get(f"{_PROPERTY}timeline")
        self.rows[report.nodeid] = MatrixRow(
            test=str(properties.get(f"{_PROPERTY}test", report.nodeid)),
            scenario=str(scenario),
            outcome=str(properties.get(f"{_PROPERTY}result", "error")),
            reason=str(properties.get(f"{_PROPERTY}reason", "")),
            duration=round(self._durations.pop(report.nodeid, 0.0), 3),
            timeline=None if timeline is None else str(timeline),
            nodeid=report.nodeid,
        )

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.rows:
            return
        terminalreporter.write_sep("=", "asyncfaults chaos matrix")
        for line in format_matrix(list(self.rows.values())):
            failed = "FAILED" in line or "ERROR" in line
            terminalreporter.write_line(line, red=failed, bold=failed)
        path = report_path(self.config)
        if path is not None:
            terminalreporter.write_line(f"asyncfaults: chaos report written to {path}")

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):  # an xdist worker: the controller reports
            return
        path = report_path(self.config)
        if path is None:
            return
        document = matrix_document(
            seed=self.config.stash.get(SEED_KEY, None),
            scenarios=[
                {
                    "name": scenario.name,
                    "file": None if scenario.path is None else str(scenario.path),
                    "description": scenario.description,
                    "faults": [toxic.describe() for toxic in scenario.toxics],
                    "expect": scenario.expect.describe(),
                }
                for scenario in self.scenarios
            ],
            rows=list(self.rows.values()),
        )
        path.write_text(dump_document(document), encoding="utf-8")


"""The run's seed, for the JSON report (set by the plugin when the engine starts)."""


def path_setting(config: pytest.Config, name: str) -> Path | None:
    """``--asyncfaults-NAME`` (from the current directory), else the ini key
    ``asyncfaults_NAME`` (from the ini file's directory), as an absolute path."""
    given = config.getoption(f"asyncfaults_{name}")
    if given:
        return Path(given).resolve()
    ini = config.getini(f"asyncfaults_{name}")
    if ini:
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        return (base / str(ini)).resolve()
    return None


def report_path(config: pytest.Config) -> Path | None:
    return path_setting(config, "report")


def scenario_of(item: pytest.Item) -> Scenario | None:
    """The scenario a chaos test runs under (its parameter), if it is one."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    scenario = callspec.params.get(FIXTURE)
    from .._scenario._model import Scenario

    return scenario if isinstance(scenario, Scenario) else None


def _test_label(item: pytest.Item) -> str:
    """The test without its scenario: ``file.py::test_upload`` (other parameters kept)."""
    callspec = getattr(item, "callspec", None)
    base = item.nodeid.split("[", 1)[0]
    if callspec is None:
        return base
    scenario = callspec.params.get(FIXTURE)
    others = [part for part in callspec.id.split("-") if part != getattr(scenario, "name", None)]
    return f"{base}[{'-'.join(others)}]" if others else base


def _verdict_of(item: pytest.Item) -> Any:

    harness = harness_of(item)
    return None if harness is None else harness.verdict


def _first_line(report: pytest.TestReport) -> str:
    text = report.longreprtext.strip()
    for line in text.splitlines():
        if line.startswith("E "):
            return line[1:].strip()[:110]
    return (text.splitlines()[-1] if text else "failed")[:110]


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return ""


def load_configured(config: pytest.Config) -> list[Scenario]:
    """The configured scenarios, or a usage error naming the file and key at fault."""
    paths = scenario_paths(config)
    if not paths:
        return []
    try:
        from .._scenario._toml import load_scenarios

        return load_scenarios(paths)
    except ScenarioError as exc:
        raise pytest.UsageError(str(exc)) from None
