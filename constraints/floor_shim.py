"""Loaded into every pytest of the floor pass (scripts/test-floor: PYTEST_PLUGINS), the inner
runs of pytester included: the suite's inner ini files name pytest-asyncio 0.24's
``asyncio_default_fixture_loop_scope``, which 0.23 (the last for pytest 7.4) does not know
and would warn about. Declared here, it is accepted and does nothing: 0.23 has one
fixture loop scope per test anyway."""

from __future__ import annotations

import contextlib

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    with contextlib.suppress(ValueError):  # a pytest-asyncio that knows it
        parser.addini(
            "asyncio_default_fixture_loop_scope", "pytest-asyncio 0.24's key, accepted (floor)"
        )
