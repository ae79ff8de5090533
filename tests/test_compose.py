"""``docker-compose.toxiproxy.yml`` cannot run here (no Docker engine), so its
structure is checked instead, against the facts the README promises."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_asyncfaults._address import parse_address
from pytest_asyncfaults._toxiproxy._config import load_proxy_config

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.toxiproxy.yml"
CONFIG = ROOT / "toxiproxy.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_services_and_pinned_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"toxiproxy", "postgres", "smtp"}
    assert services["toxiproxy"]["image"] == "ghcr.io/shopify/toxiproxy:2.12.0"
    for service in services.values():
        image = service["image"]
        name, _, tag = image.rpartition(":")
        assert name, image
        assert re.fullmatch(r"v?\d+(\.\d+)+", tag), f"{image} is not pinned to a version"


def test_toxiproxy_loads_the_repo_config_on_the_host_loopback(compose: dict[str, Any]) -> None:
    toxiproxy = compose["services"]["toxiproxy"]
    assert toxiproxy["network_mode"] == "host"
    assert "ports" not in toxiproxy  # host networking publishes nothing
    command = toxiproxy["command"]
    assert "-host=127.0.0.1" in command
    assert "-port=8474" in command
    flags = [arg for arg in command if arg.startswith("-config=")]
    assert len(flags) == 1
    in_container = flags[0].removeprefix("-config=")
    mounts = {
        target: source
        for source, target, *_ in (volume.split(":") for volume in toxiproxy["volumes"])
    }
    assert (ROOT / mounts[in_container]).resolve() == CONFIG
    assert toxiproxy["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_published_ports_bind_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_config_is_the_one_serve_reads_and_reaches_the_services(compose: dict[str, Any]) -> None:
    proxies = {proxy.name: proxy for proxy in load_proxy_config(CONFIG)}
    assert set(proxies) == {"postgres", "smtp"}
    published = {
        name: {
            int(str(port).split(":")[1]): int(str(port).split(":")[2]) for port in service["ports"]
        }
        for name, service in compose["services"].items()
        if "ports" in service
    }
    assert published["postgres"][parse_address("upstream", proxies["postgres"].upstream)[1]] == 5432
    assert published["smtp"][parse_address("upstream", proxies["smtp"].upstream)[1]] == 1025
    for proxy in proxies.values():
        assert parse_address("listen", proxy.listen)[0] == "127.0.0.1"
        assert parse_address("upstream", proxy.upstream)[0] == "127.0.0.1"
        assert proxy.enabled


def test_postgres_has_a_healthcheck(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert postgres["environment"]["POSTGRES_PASSWORD"]
