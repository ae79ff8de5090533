"""The plugin's options and ini keys, and reading them: one message for a bad value.

The per-test settings come from the one table in ``_settings``; the run-wide
ones (seed, engine, Toxiproxy URL, services, proxies, environment, app,
scenarios, report, timelines) are declared here.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

from .._address import (
    env_pair,
    format_address,
    mask_secrets,
    parse_address,
    parse_pair,
    parse_url,
    register_dsn,
)
from .._exceptions import InvalidError
from .._settings import HELP as SETTING_HELP
from .._settings import MANY as MANY_VALUED
from .._values import INT64_MAX, choice, integer_text, shown, spelled
from ._chaos import path_setting
from ._keys import SEED_KEY

if TYPE_CHECKING:
    pass


ENGINE_MODES: Final = ("thread", "process")


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
        "--asyncfaults-toxiproxy-url",
        "--toxiproxy-url",
        dest="toxiproxy_url",
        default=None,
        metavar="URL",
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
        "--asyncfaults-proxy",
        dest="asyncfaults_proxy",
        action="append",
        default=None,
        metavar="NAME=HOST:PORT",
        help="a proxy every test gets in the faults fixture (faults.NAME), to HOST:PORT or to "
        "the server of a postgresql:// DSN; may be repeated (ini asyncfaults_proxies)",
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
        "values may name proxies: DATABASE_URL={postgres.dsn}, DB_PORT={postgres.port}",
        type="linelist",
        default=[],
    )
    group.addoption(
        "--asyncfaults-env",
        dest="asyncfaults_env",
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="environment the app reads, set before it is imported; values may name proxies: "
        "DATABASE_URL={postgres.dsn}; may be repeated, and wins over the ini key "
        "asyncfaults_env line of the same NAME",
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
    for name, text in SETTING_HELP.items():
        flag = f"--asyncfaults-{name.replace('_', '-')}"
        many = name in MANY_VALUED
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


def _given(config: pytest.Config, option: str, ini: str) -> tuple[str, object] | None:
    """A run-wide setting and the name the user gave it by: the flag over the ini key.

    A flag given empty is given (and then refused by its validator), not the ini's.
    """
    value = config.getoption(option.lstrip("-").replace("-", "_"))
    if value is not None:
        return option, value
    value = config.getini(ini)
    if value not in (None, "", []):
        return ini, value
    return None


def _usage(exc: InvalidError) -> pytest.UsageError:
    return pytest.UsageError(str(exc))


def read_seed(config: pytest.Config) -> int | None:
    given = _given(config, "--asyncfaults-seed", "asyncfaults_seed")
    if given is None:
        return None
    where, raw = given
    text = str(raw).strip()
    try:
        if text.lower().startswith(("0x", "0o", "0b")) and len(text) <= 70:
            return int(text, 0)
        return integer_text(where, text, minimum=-INT64_MAX - 1, maximum=INT64_MAX)
    except (InvalidError, ValueError):
        raise pytest.UsageError(
            f"{spelled(where, raw)} is not valid: expected an integer"
        ) from None


def run_seed(config: pytest.Config) -> int:
    """The run's seed: the one given, else the controller's (an xdist worker), else a fresh
    one, drawn once at start so that the header, every failing test's report and the JSON
    report show the seed that repeats the run."""
    seed = config.stash.get(SEED_KEY, None)
    if seed is None:
        seed = read_seed(config)
        worker = getattr(config, "workerinput", None)
        if seed is None and isinstance(worker, dict) and "asyncfaults_seed" in worker:
            seed = int(worker["asyncfaults_seed"])
        if seed is None:
            seed = secrets.randbits(32)
        config.stash[SEED_KEY] = seed
    return seed


def seed_was_given(config: pytest.Config) -> bool:
    return read_seed(config) is not None


def toxiproxy_url(config: pytest.Config) -> str | None:
    for where, value in (
        ("--toxiproxy-url", config.getoption("toxiproxy_url")),
        ("TOXIPROXY_URL", os.environ.get("TOXIPROXY_URL")),
        ("asyncfaults_toxiproxy_url", config.getini("asyncfaults_toxiproxy_url")),
    ):
        if value is None or (value == "" and where != "--toxiproxy-url"):
            continue
        try:
            return parse_url(where, value)
        except InvalidError as exc:
            raise _usage(exc) from None
    return None


def postgres_dsn(config: pytest.Config) -> tuple[str, str] | None:
    """The DSN of a user's PostgreSQL server, and the setting that gave it, if any."""
    for setting, value in (
        ("--asyncfaults-postgres-dsn", config.getoption("asyncfaults_postgres_dsn")),
        ("ASYNCFAULTS_POSTGRES_DSN", os.environ.get("ASYNCFAULTS_POSTGRES_DSN")),
        ("asyncfaults_postgres_dsn", config.getini("asyncfaults_postgres_dsn")),
    ):
        if value:
            try:
                from .._services._postgres import parse_dsn

                parse_dsn(setting, str(value))
            except InvalidError as exc:
                raise pytest.UsageError(str(exc)) from None
            return str(value), setting
    return None


def engine_mode(config: pytest.Config) -> str:
    given = _given(config, "--asyncfaults-engine", "asyncfaults_engine")
    if given is None:
        return "thread"
    where, mode = given
    try:
        choice(where, mode, ENGINE_MODES)
    except InvalidError as exc:
        raise _usage(exc) from None
    if toxiproxy_url(config) is not None:
        raise pytest.UsageError(
            f"{where}={mode!r} and a Toxiproxy URL were both given: "
            f"choose one (the URL already names where the proxies live)"
        )
    return str(mode)


def app_spec(config: pytest.Config) -> tuple[str, str] | None:
    """``package.module:app`` of the app under test, checked, and where it was given."""
    given = _given(config, "--asyncfaults-app", "asyncfaults_app")
    if given is None:
        return None
    where, spec = given
    from .._app._runner import check_app_spec

    try:
        return check_app_spec(where, spec), where
    except InvalidError as exc:
        raise _usage(exc) from None


def declared_proxies(config: pytest.Config) -> dict[str, tuple[str, str | None]]:
    """Per name, the upstream ``host:port`` and the server's DSN when one was given: the
    ini key ``asyncfaults_proxies``, then ``--asyncfaults-proxy`` (which wins by name)."""
    declared: dict[str, tuple[str, str | None]] = {}
    lines = [("asyncfaults_proxies", line) for line in config.getini("asyncfaults_proxies")]
    lines += [("--asyncfaults-proxy", text) for text in config.getoption("asyncfaults_proxy") or []]
    seen: dict[tuple[str, str], str] = {}
    for where, line in lines:
        from .._toxics._spec import check_name  # loaded only for a suite that names proxies

        try:
            name, upstream = parse_pair(
                f"{where} line {mask_secrets(shown(line))}",
                line,
                "name=host:port",
                value_required=False,
            )
            check_name(f"{where} name", name)
            if (where, name) in seen:
                raise InvalidError(
                    f"{where} line {mask_secrets(shown(line))} is not valid: the name {name!r} "
                    f"is declared twice (the first line says {mask_secrets(seen[where, name])})"
                )
            seen[where, name] = line
            dsn = None
            if "://" in upstream:
                from .._services._postgres import parse_dsn

                dsn = upstream
                upstream = format_address(*parse_dsn(f"{where} {name}", dsn))
                register_dsn(dsn)
            else:
                parse_address(f"{where} {name}", upstream)
        except InvalidError as exc:
            raise pytest.UsageError(str(exc)) from None
        declared[name] = (upstream, dsn)
    return declared


def option_reader(config: pytest.Config) -> Callable[[str], object]:
    return lambda name: config.getoption(f"asyncfaults_{name}")


def ini_reader(config: pytest.Config) -> Callable[[str], object]:
    return lambda name: config.getini(f"asyncfaults_{name}")


def env_lines(config: pytest.Config) -> dict[str, str]:
    """The ini key ``asyncfaults_env``, then ``--asyncfaults-env`` (which wins by name)."""
    env: dict[str, str] = {}
    lines = [("asyncfaults_env", line) for line in config.getini("asyncfaults_env")]
    lines += [("--asyncfaults-env", text) for text in config.getoption("asyncfaults_env") or []]
    seen: set[tuple[str, str]] = set()
    for where, line in lines:
        try:
            name, value = env_pair(f"{where} line {mask_secrets(shown(line))}", line)
            if (where, name) in seen:
                raise InvalidError(
                    f"{where} line {mask_secrets(shown(line))} is not valid: {name} is set twice"
                )
            seen.add((where, name))
        except InvalidError as exc:
            raise pytest.UsageError(str(exc)) from None
        env[name] = value
    return env


ENV_PLACEHOLDER: Final = re.compile(r"(?<!\{)\{(\w+)\.")
"""``{postgres.`` in a template: the proxy it names (``{{`` is a literal brace)."""


def named_proxies(env: dict[str, str]) -> set[str]:
    """The proxies an environment's templates name: ``{postgres.dsn}`` names ``postgres``."""
    return {name for value in env.values() for name in ENV_PLACEHOLDER.findall(value)}


def check_report_path(config: pytest.Config) -> None:
    """``asyncfaults_report`` must go into a directory that exists: a typo in it would
    otherwise create a tree of directories (as root, perhaps) nobody asked for."""
    path = path_setting(config, "report")
    if path is not None and not path.parent.is_dir():
        where = (
            "--asyncfaults-report"
            if config.getoption("asyncfaults_report") is not None
            else "asyncfaults_report"
        )
        raise pytest.UsageError(
            f"{where}={str(path)!r} is not valid: its directory {str(path.parent)!r} does not "
            f"exist (create it first)"
        )


def timeline_dir(config: pytest.Config) -> Path:
    """``--asyncfaults-timeline-dir``, else pytest's cache, else ``.asyncfaults/timelines``
    under the rootdir: never a directory that other projects' timelines share."""
    given = path_setting(config, "timeline_dir")
    if given is not None:
        return given
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("asyncfaults-timelines"))
    return config.rootpath / ".asyncfaults" / "timelines"
