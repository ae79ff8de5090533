"""Connections idle in the app's pools: its steady state, not a leak.

A pool fills lazily: SQLAlchemy's keeps the connection its first request opened,
asyncpg's refills to ``min_size``. Counted at the proxy, such a connection looks
exactly like one a request took and never gave back, so "the proxy's count is
back to before" fails a correct app on its first test and passes it on the
second. What tells them apart is the pool itself: a connection waiting in its
idle queue will serve the next request, as will the one an asyncpg pool is opening
to get back to its ``min_size`` (a fault broke one); one checked out with nobody
running to return it is the leak (one more per request).

Read from the pools of the two drivers the plugin's users run on, asyncpg's
``Pool`` and SQLAlchemy's queue pools over asyncpg, found on the heap (and among
those noted before the heap was set aside, ``_heap``), and only if the app
imported them: neither is a dependency. A connection is matched to a
proxy by the port it is connected to.
"""

from __future__ import annotations

import gc
import itertools
import sys
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

_noted: list[Any] = []
"""Pools alive when the heap was set aside (``_heap``): out of ``gc.get_objects()``'s
sight from then on. Kept while open (asyncpg's pools take no weak reference)."""


def _pool_types() -> tuple[type | None, type | None]:
    return _type("asyncpg.pool", "Pool"), _type("sqlalchemy.pool.base", "Pool")


def note_pools(objects: Iterable[object]) -> None:
    """Keep the pools among ``objects`` (the heap about to be set aside), dropping the
    noted ones closed since."""
    asyncpg_pool, sqlalchemy_pool = _pool_types()
    _noted[:] = [pool for pool in _noted if not getattr(pool, "_closed", False)]
    if asyncpg_pool is None and sqlalchemy_pool is None:
        return
    known = {id(pool) for pool in _noted}
    kinds = tuple(kind for kind in (asyncpg_pool, sqlalchemy_pool) if kind is not None)
    _noted.extend(obj for obj in objects if isinstance(obj, kinds) and id(obj) not in known)


def idle_in_pools() -> Counter[int]:
    """Per server port, the connections the pools alive now keep for their next requests:
    idle in the pool, or being opened to refill it."""
    asyncpg_pool, sqlalchemy_pool = _pool_types()
    if asyncpg_pool is None and sqlalchemy_pool is None:
        return Counter()
    ports: Counter[int] = Counter()
    seen: set[int] = set()
    for obj in itertools.chain(_noted, gc.get_objects()):
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if asyncpg_pool is not None and isinstance(obj, asyncpg_pool):
            connections = list(_asyncpg_idle(obj))
            refilling = _asyncpg_refilling(obj)
            if refilling is not None:
                ports[refilling] += 1
        elif sqlalchemy_pool is not None and isinstance(obj, sqlalchemy_pool):
            connections = list(_sqlalchemy_idle(obj))
        else:
            continue
        for connection in connections:
            port = _server_port(connection)
            if port is not None:
                ports[port] += 1
    return ports


def _asyncpg_refilling(pool: Any) -> int | None:
    """The server port of the connection an asyncpg pool is opening to get back to its
    ``min_size`` (its maintenance task, one connection at a time), if it is."""
    task = getattr(pool, "_maintenance_task", None)
    if task is None or task.done():
        return None
    for holder in getattr(pool, "_holders", ()):
        port = _server_port(getattr(holder, "_con", None))
        if port is not None:
            return port
    args, kwargs = getattr(pool, "_connect_args", ()), getattr(pool, "_connect_kwargs", {})
    dsn = args[0] if args and isinstance(args[0], str) else kwargs.get("dsn")
    try:
        port = urllib.parse.urlsplit(dsn).port if isinstance(dsn, str) else None
    except ValueError:
        port = None
    given = kwargs.get("port", port)
    return given if isinstance(given, int) else None


def _type(module: str, name: str) -> type | None:
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else None


def _asyncpg_idle(pool: Any) -> Iterator[Any]:
    """An asyncpg pool's connections that no caller holds (``_in_use`` unset)."""
    for holder in getattr(pool, "_holders", ()):
        connection = getattr(holder, "_con", None)
        if connection is not None and getattr(holder, "_in_use", True) is None:
            yield connection


def _sqlalchemy_idle(pool: Any) -> Iterator[Any]:
    """A SQLAlchemy queue pool's checked-in connections, as the driver's connection."""
    queue = getattr(pool, "_pool", None)
    records: Any = getattr(queue, "queue", None)  # the threaded queue's deque
    if records is None:  # the asyncio-adapted queue: its asyncio.Queue, once made
        made = vars(queue).get("_queue") if queue is not None else None
        records = getattr(made, "_queue", ())
    for record in list(records):
        adapted = getattr(record, "dbapi_connection", None)
        connection = getattr(adapted, "driver_connection", None)
        if connection is not None:
            yield connection


def _server_port(connection: Any) -> int | None:
    """The port an asyncpg connection is connected to (the proxy's, if it goes through it)."""
    transport = getattr(connection, "_transport", None)
    if transport is None or getattr(connection, "is_closed", lambda: True)():
        return None
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2 and isinstance(peer[1], int):
        return peer[1]
    return None
