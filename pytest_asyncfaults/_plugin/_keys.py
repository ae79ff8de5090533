"""What the plugin keeps on pytest's objects (its stash keys), in one module all others read.

The hooks, the fixtures, the session and the chaos matrix each need some of
them; keeping them here, below all four, is what keeps those modules from
importing one another in a circle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .._services._shared import Services
    from ._env import EnvBaseline
    from ._harness import Harness
    from ._session import Session

HARNESS_KEY: pytest.StashKey[Harness] = pytest.StashKey()
"""On a test item: the plugin's part of that test, while it runs."""
SESSION_KEY: pytest.StashKey[Session] = pytest.StashKey()
"""On the config: where the run's proxies live, once a test asked for them."""
SERVICES_KEY: pytest.StashKey[Services] = pytest.StashKey()
"""On the config: the run's PostgreSQL and SMTP servers, once a test asked for one."""
TIMEOUT_TIMER_KEY: pytest.StashKey[tuple[float, float]] = pytest.StashKey()
"""On a test item: when pytest-timeout set its timer (``time.monotonic()``), and for how long."""
SET_ASIDE_KEY: pytest.StashKey[bool] = pytest.StashKey()
"""On a test item: the heap was set aside for it (``tasks``): its garbage is collected
after its tear-down, where what that finds is this test's."""
SEED_KEY: pytest.StashKey[int | None] = pytest.StashKey()
"""On the config: the engine's seed, for the chaos report."""
ENV_BASELINE_KEY: pytest.StashKey[EnvBaseline] = pytest.StashKey()
"""On the config: the modules and environment of the run when it first applied the app's."""
APPLIED_ENV_KEY: pytest.StashKey[dict[str, str]] = pytest.StashKey()
"""On a test item: the environment applied for it (what ``asyncfaults_env`` returned)."""


def harness_of(item: pytest.Item) -> Harness | None:
    """The plugin's part of a test that uses ``tasks`` (or ``app_client``), if any."""
    return item.stash.get(HARNESS_KEY, None)


def fail_once(message: str) -> BaseException:
    """The failure of a fixture whose input is bad: its message, printed once.

    Raise it ``from None``: ``pytest.fail`` called inside an ``except`` block
    shows the message twice ("During handling of the above exception...").
    """
    return pytest.fail.Exception(message, pytrace=False)
