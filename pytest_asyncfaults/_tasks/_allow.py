"""What ``allow`` spares: one rule for every check (settle, leaks, each detector).

An entry is a task-name pattern (``worker-*``, fnmatch) or a creation site:
``file.py`` or ``file.py:42``, matched against every frame of where the task
was created outside asyncio and this plugin, so both the app's line
(``app.py:42``) and a library's own code (``asyncpg/pool.py``, for the
tasks a pool starts for itself) can be named.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from .._frames import Frame, is_own, is_stdlib


def _site_matches(entry: str, frame: Frame) -> bool:
    path, _, line = entry.partition(":")
    filename, lineno, _ = frame
    return (
        path.endswith(".py")
        and filename.replace("\\", "/").endswith(path)
        and (not line or line == str(lineno))
    )


def allowed(allow: Sequence[str], name: str | None, frames: Iterable[Frame]) -> bool:
    """Whether an entry of ``allow`` names the task (``name``) or a frame of its creation."""
    if not allow:
        return False
    if name is not None and any(fnmatch.fnmatchcase(name, entry) for entry in allow):
        return True
    sites = [entry for entry in allow if ".py" in entry]
    return any(
        _site_matches(entry, frame)
        for frame in frames
        if not is_stdlib(frame[0]) and not is_own(frame[0])
        for entry in sites
    )
