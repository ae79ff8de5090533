"""pytest glue: options, ini keys, the report header and the ``faults`` fixture.

Thin on purpose: everything here delegates to the engine and the user API,
which work without pytest.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._engine import Engine
from ._exceptions import InvalidError
from ._faults import EmbeddedBackend, Faults, Proxy
from ._spec import check_name, parse_address

_ENGINE_KEY = pytest.StashKey[Engine]()


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
    _seed(config)  # bad values are a usage error at start, not in a fixture
    _declared_proxies(config)


def pytest_report_header(config: pytest.Config) -> str:
    seed = _seed(config)
    shown = "a fresh seed per run (shown when the engine starts)" if seed is None else seed
    return f"asyncfaults: embedded fault engine, seed {shown}"


def _engine(config: pytest.Config) -> Engine:
    engine = config.stash.get(_ENGINE_KEY, None)
    if engine is None:
        engine = Engine(seed=_seed(config)).start()
        config.stash[_ENGINE_KEY] = engine
    return engine


def pytest_unconfigure(config: pytest.Config) -> None:
    engine = config.stash.get(_ENGINE_KEY, None)
    if engine is not None:
        engine.stop()


@pytest.fixture(scope="session")
def asyncfaults_engine(pytestconfig: pytest.Config) -> Engine:
    """The session's embedded fault engine (started on first use)."""
    return _engine(pytestconfig)


@pytest.fixture
def faults(asyncfaults_engine: Engine, pytestconfig: pytest.Config) -> Iterator[Faults]:
    """The test's proxies: declared ones by name, plus any made with ``faults.create``.

    At the end of the test, proxies it created are deleted, and declared ones
    are left as they were found: enabled, with no toxic.
    """
    engine = asyncfaults_engine
    backend = EmbeddedBackend(engine)
    existing = engine.proxies()
    declared: dict[str, Proxy] = {}
    for name, upstream in _declared_proxies(pytestconfig).items():
        info = existing.get(name) or engine.create_proxy(name, upstream)
        declared[name] = Proxy(backend, info)
    before = set(engine.proxies())
    faults = Faults(backend, declared)
    yield faults
    for name in set(engine.proxies()) - before:
        engine.delete_proxy(name)
    for name in declared:
        for toxic in engine.toxics(name):
            engine.remove_toxic(name, toxic.name)
        engine.update_proxy(name, enabled=True)
