"""The heap a test's checks search: what was alive before the test is set aside.

The checks at a test's end ask the garbage collector twice: a collection, so
that a task lost while pending and a driver's connection let go of in a
reference cycle show up now, in this test; and a walk of the heap, for the
coroutines never awaited and the pools' idle connections. Over a test
session's heap (pytest, the app's framework, every module imported: tens of
thousands of objects) each costs tens of milliseconds, twice a test: more than
the test itself.

What a test's checks look for was made during the test, so everything alive
when it starts is moved out of the collector's sight first (``gc.freeze()``,
after a collection): the collections and walks of the test then cover only
what the test made. Objects set aside this way are never collected as cycles
(reference counting still frees them), which a test process does not miss:
they are the modules, the session's fixtures and what pytest keeps. The whole
heap is given back to the collector when the session ends (``thaw``).

Pools alive before the test (an engine made at import) are among what is set
aside: they are noted first (``_pools.note_pools``), so that their idle
connections are still told apart from a leak.
"""

from __future__ import annotations

import gc
import warnings

from ._pools import note_pools

_frozen = False


def set_aside() -> None:
    """Before a test: collect, note the pools, and set aside all that is alive.

    What this collection frees was let go of before the test, by an earlier one (a
    socket its closed loop held): its ``ResourceWarning`` is not this test's to fail
    on, and is not raised here (the plugin collects each test's garbage after its own
    tear-down, where what is found is that test's)."""
    global _frozen
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    note_pools(gc.get_objects())
    gc.freeze()
    _frozen = True


def thaw() -> None:
    """At the session's end: the collector sees the whole heap again."""
    global _frozen
    if _frozen:
        gc.unfreeze()
        _frozen = False
