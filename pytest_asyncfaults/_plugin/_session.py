"""What one pytest run shares: where its proxies live, the declared proxies, the services.

Thin on purpose: everything here delegates to the hosts and the user API,
which work without pytest. Where the proxies live is chosen once per run:

- the embedded engine in a thread of the test process (the default);
- the same engine as an ``asyncfaults serve`` child process
  (``--asyncfaults-engine=process``), for apps that hold the GIL for long;
- a Toxiproxy HTTP API the user runs (``--toxiproxy-url``, ``TOXIPROXY_URL``
  or the ini key ``asyncfaults_toxiproxy_url``). That server may be shared,
  so every proxy made here gets a name no other run or worker uses, and only
  those proxies are ever changed or deleted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import pytest

from .._exceptions import AsyncFaultsError
from ._keys import SERVICES_KEY, SESSION_KEY
from ._options import declared_proxies, engine_mode, postgres_dsn, run_seed, toxiproxy_url

if TYPE_CHECKING:
    from .._backends._base import ProxyHost
    from .._backends._process import ServeProcess
    from .._faults import Proxy
    from .._services._shared import Services

    pass


SERVICE_FIXTURES: Final = ("postgres_server", "smtp_server")


@dataclass
class Session:
    """What the run shares: the host, its child process if any, declared proxies."""

    host: ProxyHost[Any]
    prefix: str = ""
    child: ServeProcess | None = None
    declared: dict[str, Proxy] = field(default_factory=dict)

    def close(self) -> None:
        try:
            if self.prefix:  # a shared server: delete exactly what this run made
                for proxy in self.declared.values():
                    with contextlib.suppress(AsyncFaultsError):
                        self.host.delete_proxy(proxy.server_name)
            self.host.stop()
        finally:
            if self.child is not None:
                self.child.stop()


def run_services(config: pytest.Config) -> Services:
    services = config.stash.get(SERVICES_KEY, None)
    if services is None:
        dsn = postgres_dsn(config)
        from .._services._shared import Services

        services = config.stash[SERVICES_KEY] = Services(*dsn) if dsn else Services()
    return services


def start_session(config: pytest.Config) -> Session:
    # The backends (an HTTP client, the engine) load when a test first needs proxies:
    # an unrelated suite that merely has the plugin installed never pays for them.
    from .._backends._embedded import Engine
    from .._backends._process import start_serve_process
    from .._backends._toxiproxy import ToxiproxyHost

    url = toxiproxy_url(config)
    try:
        if url is not None:
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            prefix = f"af-{secrets.token_hex(4)}-{worker}-"
            return Session(ToxiproxyHost(url).start(), prefix=prefix)
        if engine_mode(config) == "process":
            child = start_serve_process(seed=run_seed(config))
            try:
                return Session(ToxiproxyHost(child.url).start(), child=child)
            except BaseException:
                child.stop()
                raise
        return Session(Engine(seed=run_seed(config)).start())
    except AsyncFaultsError as exc:
        raise pytest.UsageError(str(exc)) from None


def run_session(config: pytest.Config) -> Session:
    from .._faults import Proxy

    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        session = start_session(config)
        config.stash[SESSION_KEY] = session
        for name, (upstream, dsn) in declared_proxies(config).items():
            info = session.host.create_proxy(session.prefix + name, upstream)
            session.declared[name] = Proxy(session.host, info, alias=name, service_dsn=dsn)
    return session


def proxy_to(config: pytest.Config, name: str, address: str, dsn: str | None = None) -> None:
    """Declare the proxy ``faults.<name>`` to a service, as if the ini file named it; ``dsn``
    (the server's, if it has one) is what ``{name.dsn}`` points at the proxy."""
    from .._faults import Proxy

    session = run_session(config)
    if name in session.declared:
        pytest.fail(
            f"asyncfaults_proxies declares a proxy named {name!r} (the ini key, or "
            f"--asyncfaults-proxy), and the {name}_server fixture makes one of that name to its "
            f"server: rename or remove that declaration",
            pytrace=False,
        )
    info = session.host.create_proxy(session.prefix + name, address)
    session.declared[name] = Proxy(session.host, info, alias=name, service_dsn=dsn)
