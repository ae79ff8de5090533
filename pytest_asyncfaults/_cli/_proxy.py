"""``asyncfaults proxy``: the fault proxy on its own, for a server the user runs.

For poking at an app by hand (or from another tool) with no test around it:
proxies to the given upstreams, with the faults given on the command line or
in a scenario file, until interrupted (or for ``--duration`` seconds). The
proxies' addresses are printed first, one line each, so a script can read
them; the counters are printed at the end, with what the protocol toxics did (a
login refused, an error given for a statement, a reply given to a command).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Final, TextIO, final

from .._address import format_address, is_loopback, parse_address, parse_pair
from .._backends._embedded import Engine
from .._exceptions import AsyncFaultsError, InvalidError
from .._scenario._inline import scenario_from_options
from .._toxics._spec import check_name
from .._values import seconds, spelled

SHOWN_EVENTS: Final = 20
"""What the protocol toxics did, printed at the end: the latest, per proxy."""


@final
@dataclass(frozen=True)
class ProxyPlan:
    """One proxy of ``asyncfaults proxy``: its name, where it listens, where it goes."""

    name: str
    upstream: str
    listen: str = "127.0.0.1:0"


def parse_proxies(values: Sequence[str], *, allow_remote: bool) -> list[ProxyPlan]:
    """``NAME=HOST:PORT`` or ``NAME=HOST:PORT@LISTEN_HOST:LISTEN_PORT``, checked."""
    plans = []
    for text in values:
        name, rest = parse_pair(
            spelled("--proxy", text),
            text,
            "NAME=HOST:PORT[@LISTEN_HOST:PORT], e.g. postgres=127.0.0.1:5432@127.0.0.1:15432",
        )
        check_name(f"--proxy {name}", name)
        upstream, at, listen = rest.partition("@")
        parse_address(f"--proxy {name} upstream", upstream.strip())
        listen = listen.strip() if at else "127.0.0.1:0"
        host, port = parse_address(f"--proxy {name} listen", listen)
        if not allow_remote and not is_loopback(host):
            raise InvalidError(
                f"--proxy {name} listen={listen!r} is not a loopback address: anyone who "
                f"reaches it could use the proxy; add --allow-remote to listen there anyway"
            )
        plans.append(ProxyPlan(name, upstream.strip(), format_address(host, port)))
    if not plans:
        raise InvalidError("--proxy is missing: name at least one upstream, NAME=HOST:PORT")
    names = [plan.name for plan in plans]
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise InvalidError(f"--proxy names must be unique: {twice} is given twice")
    return plans


def run_proxy(
    *,
    proxies: Sequence[str],
    toxics: Sequence[str],
    scenario: str | None,
    seed: int | None,
    duration: float | None,
    allow_remote: bool,
    out: TextIO = sys.stdout,
) -> int:
    """Run until SIGINT/SIGTERM or ``duration``; 0 on a clean stop, 1 on failure, 2 on usage."""
    try:
        plans = parse_proxies(proxies, allow_remote=allow_remote)
        if duration is not None:
            seconds("--duration", duration, positive=True)
        plan = scenario_from_options(scenario, toxics, (proxy.name for proxy in plans))
    except InvalidError as exc:
        print(f"asyncfaults proxy: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Engine(seed=seed, allow_remote=allow_remote) as engine:
            for proxy in plans:
                info = engine.create_proxy(proxy.name, proxy.upstream, proxy.listen)
                print(f"{proxy.name}: listening on {info.listen} -> {info.upstream}", file=out)
            for toxic in plan.toxics if plan is not None else ():
                engine.add_toxic(toxic.proxy, toxic.spec)
                print(f"fault {toxic.describe()}", file=out)
            until = f"for {duration:g} s" if duration is not None else "until interrupted"
            print(f"asyncfaults proxy: seed {engine.seed}, running {until}", file=out, flush=True)
            stop.wait(duration)
            for proxy in plans:
                stats = engine.stats(proxy.name)
                print(
                    f"{proxy.name}: {stats.accepted} accepted, {stats.open} open, "
                    f"{stats.bytes_upstream} bytes up, {stats.bytes_downstream} bytes down, "
                    f"{stats.upstream_errors} upstream errors, toxics hit "
                    f"{dict(stats.toxics_hit) or 'none'}",
                    file=out,
                    flush=True,
                )
                done = [event for event in engine.protocol_events(proxy.name) if event.injected]
                for event in done[-SHOWN_EVENTS:]:
                    print(
                        f"{proxy.name}: connection {event.connection}: {event.describe()}",
                        file=out,
                    )
    except AsyncFaultsError as exc:
        print(f"asyncfaults proxy: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
