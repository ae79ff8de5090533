"""Loaded into every pytest of the floor pass (scripts/test-floor: PYTEST_PLUGINS), the inner
runs of pytester included: the suite's inner ini files name pytest-asyncio 0.24's
``asyncio_default_fixture_loop_scope``, which 0.23 (the last for pytest 7.4) does not know
and would warn about. Declared here, it is accepted and does nothing: 0.23 has one
fixture loop scope per test anyway. And the loop 0.23 leaves behind after each test is
closed (see below)."""

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


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """pytest-asyncio 0.23 ends each test by setting a fresh event loop it never closes; its
    garbage (an unclosed loop, its self-pipe) would be collected in a later test, under that
    test's warnings filter, as if that test had leaked it. Closed here, after the test that
    made it."""
    try:
        return (yield)
    finally:
        local = getattr(asyncio.get_event_loop_policy(), "_local", None)
        loop = getattr(local, "_loop", None)
        if isinstance(loop, asyncio.AbstractEventLoop) and not loop.is_running():
            if not loop.is_closed():
                loop.close()
            asyncio.set_event_loop(None)
