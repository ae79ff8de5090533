"""Loaded into every pytest of the floor pass (scripts/test-floor: PYTEST_PLUGINS), the inner
runs of pytester included: the suite's inner ini files name pytest-asyncio 0.24's
``asyncio_default_fixture_loop_scope``, which 0.23 (the last for pytest 7.4) does not know
and would warn about. Declared here, it is accepted and does nothing: 0.23 has one
fixture loop scope per test anyway. And the loops 0.23 leaves behind are closed (see
below)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    with contextlib.suppress(ValueError):  # a pytest-asyncio that knows it
        parser.addini(
            "asyncio_default_fixture_loop_scope", "pytest-asyncio 0.24's key, accepted (floor)"
        )


_HELD: list[asyncio.AbstractEventLoop] = []
"""Loops set as current at the end of a test, kept until they are replaced, then closed."""


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """pytest-asyncio 0.23 ends each test by setting a fresh event loop, and the next test
    replaces it without closing it; its garbage (an unclosed loop, its self-pipe) would be
    collected in some later test, under that test's warnings filter, as if that test had
    leaked it. Held here instead, and closed once it is no longer the current loop."""
    try:
        return (yield)
    finally:
        local = getattr(asyncio.get_event_loop_policy(), "_local", None)
        current = getattr(local, "_loop", None)
        for loop in list(_HELD):
            if loop is not current and not loop.is_running():
                if not loop.is_closed():
                    loop.close()
                _HELD.remove(loop)
        if isinstance(current, asyncio.AbstractEventLoop) and current not in _HELD:
            _HELD.append(current)
