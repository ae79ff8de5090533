"""The app's environment: applied from whatever ``asyncfaults_env`` returns, and checked.

An app that reads its settings from the environment at import (a DSN in
``DATABASE_URL``, a pool made at import) sees the proxies only if it is imported
after the environment is set. Whatever the ``asyncfaults_env`` fixture returns,
the plugin's default or a user's override, is applied here, around that
fixture's life; and the app ``asgi_app`` hands over is checked: if its module
was imported before this run first set the environment, it read its settings
without the proxies, every fault would miss it, and a test of a blackholed
database would pass. That stops the test, with what to do instead.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Final, final

import pytest

from .._address import mask_env, register_dsn, register_secret
from .._exceptions import AsyncFaultsWarning
from ._keys import APPLIED_ENV_KEY as APPLIED_KEY
from ._keys import ENV_BASELINE_KEY

_LIBRARY_DIRS: Final = tuple(
    {
        str(Path(path).resolve())
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (path := sysconfig.get_paths().get(key))
    }
)
"""Where the standard library and installed packages live: never the app under test."""


@final
@dataclass
class EnvBaseline:
    """What the run looked like when it first applied the app's environment."""

    modules: dict[str, ModuleType] = field(default_factory=dict)
    """Every module imported by then: an app among them was configured without the proxies."""
    environ: dict[str, str] = field(default_factory=dict)


def apply_env(request: pytest.FixtureRequest, fixturedef: Any, value: object) -> None:
    """Set what ``asyncfaults_env`` returned in ``os.environ`` until that fixture ends."""
    if value is None:
        return
    if not isinstance(value, Mapping) or not all(
        isinstance(name, str) and isinstance(text, str) for name, text in value.items()
    ):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        pytest.fail(
            f"the asyncfaults_env fixture returned {shown}: expected a mapping of "
            f"environment variable names to strings, {{'DATABASE_URL': '...'}}",
            pytrace=False,
        )
    env = dict(value)
    for name, text in env.items():
        if mask_env(name, text) == "***":
            register_secret(text)  # DB_PASSWORD={postgres.password}: never printed
        elif "://" in text:
            register_dsn(text)
    config = request.config
    if env and ENV_BASELINE_KEY not in config.stash:
        config.stash[ENV_BASELINE_KEY] = EnvBaseline(dict(sys.modules), dict(os.environ))
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)

    def restore() -> None:
        for name, previous in saved.items():
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous

    fixturedef.addfinalizer(restore)
    request.node.stash[APPLIED_KEY] = env


def check_app_import(request: pytest.FixtureRequest, app: object) -> None:
    """Stop the test when the app's module was imported before the environment was applied
    (the ``early_import`` setting: ``fail``, ``warn`` or ``off``)."""
    env = request.node.stash.get(APPLIED_KEY, None)
    baseline = request.config.stash.get(ENV_BASELINE_KEY, None)
    if not env or baseline is None or app is None:
        return
    try:
        policy = getattr(request.getfixturevalue("asyncfaults_settings"), "early_import", "fail")
    except pytest.FixtureLookupError:  # an asgi_app of a wider scope than the test's settings
        policy = "fail"
    if policy == "off":
        return
    changed = [name for name, value in env.items() if baseline.environ.get(name) != value]
    if not changed:
        return  # the environment was already what the test sets: nothing was missed
    holders = [
        name
        for name, module in list(baseline.modules.items())
        if _is_users(module)
        and any(value is app for value in list(getattr(module, "__dict__", {}).values()))
    ]
    if not holders:
        return
    # The module that made the app, rather than a conftest or a test module importing it.
    holders.sort(key=lambda name: (_is_test_module(name), name.count("."), name))
    module = holders[0]
    made_in = baseline.modules[module]
    where = getattr(made_in, "__file__", None) or module
    importers = [
        _short_path(baseline.modules[name])
        for name, held in list(baseline.modules.items())
        if name != module
        and _is_test_module(name)
        and _is_users(held)
        and any(
            value is app or value is made_in
            for value in list(getattr(held, "__dict__", {}).values())
        )
    ]
    by = f" ({', '.join(importers[:3])} imports it at its top)" if importers else ""
    names = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
    named = request.config.getoption("asyncfaults_app") or request.config.getini("asyncfaults_app")
    lazily = (
        "import it only inside the tests or fixtures that need it, or leave that to "
        "asyncfaults_app, which names it already"
        if named
        else f'name it in the ini key asyncfaults_app = "{module}:app", or import it inside '
        f"the asgi_app fixture"
    )
    message = (
        f"asyncfaults: the app under test comes from the module {module!r} ({where}), which "
        f"was imported before asyncfaults_env was applied{by}: it read its settings without "
        f"{names} as this test sets them, so no fault on the test's proxies would reach it.\n"
        f"  Import the app lazily: {lazily} (not at the top of conftest.py or of a test "
        f"module);\n"
        f"  or configure it in code: an asgi_app fixture returning create_app(...) with "
        f"postgres_server.dsn_via(faults.postgres). (An app that reads its settings only "
        f"when it starts, not at import, is not concerned: early_import = off.)"
    )
    if policy == "warn":
        warnings.warn(AsyncFaultsWarning(message), stacklevel=1)
    else:
        pytest.fail(message, pytrace=False)


def _short_path(module: ModuleType) -> str:
    path = getattr(module, "__file__", None)
    if not isinstance(path, str):
        return str(getattr(module, "__name__", "?"))
    try:
        return os.path.relpath(path)
    except ValueError:
        return path


def _is_users(module: ModuleType) -> bool:
    """A module of the project under test: it has a file outside the library directories."""
    path = getattr(module, "__file__", None)
    name = getattr(module, "__name__", "")
    if not isinstance(path, str) or not isinstance(name, str):
        return False
    if name.startswith(("_pytest", "pytest_asyncfaults")):
        return False
    try:
        resolved = str(Path(path).resolve())
    except OSError:
        return False
    return not resolved.startswith(_LIBRARY_DIRS)


def _is_test_module(name: str) -> bool:
    last = name.rpartition(".")[2]
    return last == "conftest" or last.startswith("test_") or last.endswith("_test")
