"""``asyncfaults repro``: an incident from production, replayed against the app in one command.

It starts the app in process (its lifespan, served as uvicorn serves it),
puts fault proxies in front of the upstreams it is given, points the app at
them through its environment, applies a scenario file or faults given on the
command line, sends one request, and waits for the background work up to a
deadline. It prints what became of that work, or the hang report: the await
chain of what is stuck, and the faults active at that moment. The exit status
says whether the app did what it must (0), did not (1: a hang, a failure
nobody logged, a 5xx, an expectation of the scenario unmet), or the command
line was wrong (2).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO, final

import httpx

from .._address import (
    env_pair,
    format_address,
    mask_env,
    mask_secrets,
    parse_address,
    parse_pair,
    register_dsn,
    register_secret,
)
from .._app._runner import AppRunner, check_app_spec, load_app, make_client
from .._backends._embedded import Engine
from .._exceptions import AsyncFaultsError, HangError, InvalidError, LifespanError
from .._faults import Faults
from .._frames import describe_exception
from .._run import Run, describe_faults
from .._scenario._inline import scenario_from_options
from .._scenario._model import Expectations, Scenario
from .._services._postgres import parse_dsn
from .._settings import Settings
from .._tasks._monitor import TaskMonitor
from .._tasks._outcome import Outcome
from .._tasks._watchdog import interrupt_past
from .._timeline import write_timeline
from .._toxics._spec import check_name
from .._values import DATA_MAX_BYTES, TEXT_MAX, invalid, read_bounded, seconds, shown, spelled

DEFAULT_WITHIN: Final = 10.0
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2


@final
@dataclass
class ReproRequest:
    """The one request to send: ``POST /upload`` with a body, files, headers."""

    method: str = "GET"
    path: str = "/"
    data: bytes | None = None
    files: list[tuple[str, Path]] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@final
@dataclass
class ReproPlan:
    """What ``asyncfaults repro`` was asked to do, checked."""

    app: str
    upstreams: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    dsns: dict[str, str] = field(default_factory=dict)
    """Per proxy given as a DSN, that DSN: what ``{name.dsn}`` points at the proxy."""
    scenario: Scenario | None = None
    request: ReproRequest = field(default_factory=ReproRequest)
    within: float | None = None
    seed: int | None = None
    startup_timeout: float = 10.0
    app_dir: Path = field(default_factory=Path.cwd)
    timeline: Path | None = None

    @property
    def deadline(self) -> float:
        if self.within is not None:
            return self.within
        if self.scenario is not None and self.scenario.expect.settle is not None:
            return self.scenario.expect.settle
        return DEFAULT_WITHIN

    @property
    def bound(self) -> float:
        """The whole run's: startup, the request's and the work's deadlines, shutdown."""
        return self.startup_timeout * 2 + self.deadline * 2


def make_plan(
    *,
    app: str,
    proxies: Sequence[str],
    env: Sequence[str],
    scenario: str | None,
    toxics: Sequence[str],
    request: str,
    data: str | None,
    files: Sequence[str],
    headers: Sequence[str],
    within: float | None,
    seed: int | None,
    startup_timeout: float,
    app_dir: str | None,
    timeline: str | None,
) -> ReproPlan:
    """Check every part of the command line; the first bad one raises ``InvalidError``."""
    check_app_spec("APP", app)
    upstreams: dict[str, str] = {}
    dsns: dict[str, str] = {}
    for name, upstream in _pairs(
        "--proxy", proxies, "NAME=HOST:PORT or NAME=postgresql://user:password@host:port/db"
    ):
        check_name(f"--proxy {name}", name)
        if name in upstreams:
            raise InvalidError(
                f"--proxy {name}={mask_secrets(upstream)} is not valid: {name} was given "
                f"already (--proxy {name}={mask_secrets(upstreams[name])}): proxy names must be "
                f"unique"
            )
        if "://" in upstream:
            dsns[name] = upstream
            register_dsn(upstream)  # never printed
            upstream = format_address(*parse_dsn(f"--proxy {name}", upstream))
        else:
            parse_address(f"--proxy {name}", upstream)
        upstreams[name] = upstream
    if not upstreams:
        raise InvalidError("--proxy is missing: name at least one upstream, NAME=HOST:PORT")
    plan_scenario = scenario_from_options(scenario, toxics, upstreams)
    method, _, path = request.strip().partition(" ")
    method, path = method.upper(), path.strip()
    if (
        not method.isascii()
        or not method.isalpha()
        or len(method) > 20
        or not path.startswith("/")
        or len(path) > 8000
        or not path.isprintable()
        or " " in path
    ):
        raise invalid("--request", request, "'METHOD /path', e.g. 'POST /upload'")
    body: bytes | None = None
    if data is not None:
        body = (
            read_bounded(f"--data=@{data[1:]}", data[1:], DATA_MAX_BYTES)
            if data.startswith("@")
            else data.encode()
        )
    upload = []
    for name, value in _pairs("--file", files, "FIELD=PATH, e.g. file=march.csv"):
        if not Path(value).is_file():
            raise InvalidError(f"--file {name}={value!r}: no such file")
        upload.append((name, Path(value)))
    header_list = []
    for text in headers:
        name, sep, value = text.partition(":")
        if (
            not sep
            or not _HEADER_NAME.fullmatch(name.strip())
            or any(char in value for char in "\r\n\x00")
            or len(text) > TEXT_MAX
        ):
            raise invalid("--header", text, "'Name: value' (a token, then text on one line)")
        header_list.append((name.strip(), value.strip()))
    if within is not None:
        seconds("--within", within, positive=True)
    seconds("--startup-timeout", startup_timeout, positive=True)
    directory = Path(app_dir) if app_dir is not None else Path.cwd()
    if not directory.is_dir():
        raise InvalidError(f"--app-dir={app_dir!r}: no such directory")
    if timeline is not None and not Path(timeline).parent.is_dir():
        raise InvalidError(
            f"--timeline={timeline!r} is not valid: its directory does not exist (create it first)"
        )
    env_vars: dict[str, str] = {}
    for text in env:
        name, value = env_pair(f"--env={shown(text)}", text)
        env_vars[name] = value
    return ReproPlan(
        app=app,
        upstreams=upstreams,
        env=env_vars,
        dsns=dsns,
        scenario=plan_scenario,
        request=ReproRequest(method, path, body, upload, header_list),
        within=within,
        seed=seed,
        startup_timeout=startup_timeout,
        app_dir=directory,
        timeline=None if timeline is None else Path(timeline),
    )


def _pairs(option: str, values: Sequence[str], allowed: str) -> Iterator[tuple[str, str]]:
    for text in values:
        yield parse_pair(spelled(option, text), text, allowed)


def run_repro(plan: ReproPlan, out: TextIO = sys.stdout) -> int:
    """Run the plan; the exit status (see the module doc)."""
    try:
        with Engine(seed=plan.seed) as engine:
            say(out, f"asyncfaults repro: {plan.app}, fault engine seed {engine.seed}")
            # The app's whole run is bounded too: startup, the request, the
            # deadline, shutdown, and the clean-up of each.
            return asyncio.run(asyncio.wait_for(_replay(plan, engine, out), plan.bound + 30))
    except TimeoutError:
        say(sys.stderr, "asyncfaults repro: the app did not stop within its bounds; gave up")
        return EXIT_FAILED
    except AsyncFaultsError as exc:
        say(sys.stderr, f"asyncfaults repro: {exc}")
        return EXIT_USAGE if isinstance(exc, InvalidError) else EXIT_FAILED


def say(out: TextIO, text: str = "") -> None:
    """Print a line of the replay: no password the run knows of, nor any URL's, shown."""
    print(mask_secrets(text), file=out, flush=True)


async def _replay(plan: ReproPlan, engine: Engine, out: TextIO) -> int:
    faults = Faults(engine)
    saved_env = {name: os.environ.get(name) for name in plan.env}
    sys.path.insert(0, str(plan.app_dir))
    try:
        for name, upstream in plan.upstreams.items():
            proxy = await faults.create(name, upstream)
            proxy.service_dsn = plan.dsns.get(name)
            say(out, f"  proxy {name}: {proxy.listen} -> {proxy.upstream}")
        for name, template in plan.env.items():
            os.environ[name] = faults.fill(template, field=f"--env {name}")
            if mask_env(name, os.environ[name]) == "***":
                register_secret(os.environ[name])
            say(out, f"  env {name}={mask_env(name, os.environ[name])}")
        try:
            app = load_app(plan.app, field="APP")
        except InvalidError:
            raise
        except Exception as exc:  # the app's own import failed: its message, not ours
            raise InvalidError(
                f"APP={plan.app!r}: importing it failed: {describe_exception(exc)}"
            ) from None
        return await _run_app(plan, app, faults, out)
    finally:
        await faults.aclose()
        with contextlib.suppress(ValueError):
            sys.path.remove(str(plan.app_dir))
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def _run_app(plan: ReproPlan, app: object, faults: Faults, out: TextIO) -> int:
    scenario = plan.scenario
    expect = scenario.expect if scenario is not None else Expectations(logged=True)
    monitor = TaskMonitor(
        default_within=plan.deadline,
        connections=faults.clients_open,
        ports=faults.ports,
        faults_summary=lambda: describe_faults(faults),
    ).install()
    run = Run(monitor, Settings(), faults, scenario)
    runner = AppRunner(
        app,  # type: ignore[arg-type]
        monitor,
        startup_timeout=plan.startup_timeout,
        shutdown_timeout=plan.startup_timeout,
    )
    status = EXIT_OK
    failure = ""
    # A blocked loop is interrupted at the bound that applies (the lifespan's limits, the
    # request's and the work's deadline), and past the whole run's at the latest.
    run.start_watchdog(
        interrupt_at=time.monotonic() + plan.bound,
        what=f"the run's bound ({plan.bound:g} s: startup, the deadlines, shutdown)",
    )
    try:
        await runner.start()
        async with contextlib.AsyncExitStack() as stack:
            if scenario is not None:
                await run.apply_scenario(stack)
                say(out, f"  faults ({scenario.name}): " + scenario.describe_faults())
            status, failure = await _exchange(plan, runner, run, expect, out)
    except LifespanError as exc:
        say(out, str(exc))
        status, failure = EXIT_FAILED, "the app's lifespan did not start"
    finally:
        client_timeline = None
        if status != EXIT_OK:
            await run.read_protocol_events()
            client_timeline = _timeline(plan, run, failure)
        try:
            await runner.stop()
        finally:
            run.stop_watchdog()
            monitor.uninstall()
    if client_timeline is not None:
        say(out, f"Timeline: {client_timeline} (open it in a browser)")
    say(out, "result: " + ("OK" if status == EXIT_OK else f"FAILED: {failure}"))
    return status


async def _exchange(
    plan: ReproPlan,
    runner: AppRunner,
    run: Run,
    expect: Expectations,
    out: TextIO,
) -> tuple[int, str]:
    """Send the request, wait for the background work, judge it."""
    monitor = run.monitor
    request = plan.request
    async with contextlib.AsyncExitStack() as files:
        # The request is bounded by the deadline below, which reports every pending task.
        client = await files.enter_async_context(make_client(runner, timeout=None))
        opened = {
            name: (path.name, files.enter_context(path.open("rb"))) for name, path in request.files
        }
        sent = time.monotonic()
        try:
            with interrupt_past(plan.deadline, f"the request's deadline ({plan.deadline:g} s)"):
                async with asyncio.timeout(plan.deadline):
                    response = await client.request(
                        request.method,
                        request.path,
                        content=request.data,
                        files=opened or None,
                        headers=request.headers,
                    )
        except TimeoutError:
            report = await monitor.hang_report(
                monitor.pending(),
                f"still pending: {request} got no response within {plan.deadline:g} s",
            )
            say(out, report)
            return EXIT_FAILED, f"{request} got no response within {plan.deadline:g} s"
        except httpx.HTTPError as exc:
            return EXIT_FAILED, f"{request} failed: {describe_exception(exc)}"
        took = time.monotonic() - sent
        body = response.text if len(response.text) <= 300 else response.text[:300] + "..."
        say(out, f"{request} -> {response.status_code} in {took:.2f} s: {body}")
        say(out, f"waiting up to {plan.deadline:g} s for the background work...")
        try:
            outcome = await monitor.settle(plan.deadline)
        except HangError as exc:
            say(out, str(exc))
            return EXIT_FAILED, exc.short or "hang"
    _print_outcome(outcome, out)
    unmet = run.unmet(expect, outcome)
    if response.status_code >= 500:
        say(out, f"the app answered {response.status_code}")
        return EXIT_FAILED, f"{request} answered {response.status_code}"
    if unmet:
        for item in unmet:
            say(out, item.detail)
        return EXIT_FAILED, "; ".join(item.short for item in unmet)
    # What the plugin's detectors find in a test (a blocked loop among them) fails a
    # replay too: the same run, judged the same way.
    found = [(text, short) for policy, text, short in run.findings([], None) if policy == "fail"]
    if found:
        for text, _ in found:
            say(out, text)
        return EXIT_FAILED, found[0][1].splitlines()[0]
    return EXIT_OK, ""


def _print_outcome(outcome: Outcome, out: TextIO) -> None:
    count = len(outcome)
    say(out, f"background work settled in {outcome.elapsed:.2f} s: {count} task(s)")
    for entry in outcome:
        logged = ""
        if entry.state == "failed":
            logged = ", logged" if entry.logged else ", NOT logged"
        say(out, f"  - {entry}{logged}")


def _timeline(plan: ReproPlan, run: Run, failure: str) -> Path | None:
    path = plan.timeline or Path(tempfile.gettempdir()) / "asyncfaults-repro.html"
    timeline = run.timeline(title=f"asyncfaults repro {plan.app}: {plan.request}", summary=failure)
    try:
        return write_timeline(timeline, path)
    except OSError as exc:
        say(sys.stderr, f"asyncfaults repro: the timeline could not be written to {path}: {exc}")
        return None
