"""The public surface is a contract: this test fails when it drifts."""

from __future__ import annotations

import pytest_asyncfaults

PUBLIC = (
    "TOXIC_TYPES",
    "AlreadyExistsError",
    "AsyncFaultsError",
    "AsyncFaultsWarning",
    "ConnectionSelector",
    "Engine",
    "EngineError",
    "FaultCore",
    "InvalidError",
    "ListenError",
    "NotFoundError",
    "PostgresServer",
    "ProxyInfo",
    "ProxyStats",
    "ReceivedMail",
    "ServiceError",
    "SmtpServer",
    "ToxicSpec",
    "make_toxic",
)


def test_all_is_the_documented_surface() -> None:
    assert pytest_asyncfaults.__all__ == PUBLIC


def test_every_public_name_is_defined_and_claims_the_package() -> None:
    for name in PUBLIC:
        obj = getattr(pytest_asyncfaults, name)
        module = getattr(obj, "__module__", "pytest_asyncfaults")
        assert module.startswith("pytest_asyncfaults"), name


def test_every_error_derives_from_one_base() -> None:
    base = pytest_asyncfaults.AsyncFaultsError
    for name in PUBLIC:
        obj = getattr(pytest_asyncfaults, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and not issubclass(obj, Warning):
            assert issubclass(obj, base), name


def test_toxic_types_are_toxiproxys() -> None:
    assert set(pytest_asyncfaults.TOXIC_TYPES) == {
        "latency",
        "bandwidth",
        "slow_close",
        "timeout",
        "reset_peer",
        "slicer",
        "limit_data",
        "noop",
    }
