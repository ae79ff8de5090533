"""The public surface is a contract: these tests fail when it drifts.

The expected names are derived, not copied (httpx's ``test_exported_members``):
what ``vars(pytest_asyncfaults)`` offers is ``__all__``, every name there
claims the package, and every class a user gets hold of through the surface
(a fixture's type, what a public method returns or takes) is itself exported,
exactly once (trio's ``test_exports``), so a user can annotate with it.
"""

from __future__ import annotations
import __future__

import importlib
import inspect
import pkgutil
import typing
from collections.abc import Iterator
from types import ModuleType

import pytest

import pytest_asyncfaults
from pytest_asyncfaults import _plugin
from pytest_asyncfaults._backends._process import SERVE_STACK

EXPORTED = {name: getattr(pytest_asyncfaults, name) for name in pytest_asyncfaults.__all__}


def _private_modules() -> Iterator[ModuleType]:
    for info in pkgutil.walk_packages(pytest_asyncfaults.__path__, "pytest_asyncfaults."):
        if not info.name.endswith("__main__"):
            try:
                yield importlib.import_module(info.name)
            except ModuleNotFoundError as exc:
                # `asyncfaults serve` without the serve extra (scripts/test-floor): not there
                if exc.name not in SERVE_STACK:
                    raise


def test_all_is_what_the_module_offers() -> None:
    offered = {
        name
        for name in dir(pytest_asyncfaults)
        if not name.startswith("_")
        and not isinstance(getattr(pytest_asyncfaults, name), ModuleType | __future__._Feature)
    }
    assert offered | {"__version__"} == set(pytest_asyncfaults.__all__)


def test_a_name_not_exported_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'FaultCore'"):
        pytest_asyncfaults.FaultCore  # noqa: B018


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_every_exported_name_claims_the_package(name: str) -> None:
    value = EXPORTED[name]
    if inspect.isclass(value) or inspect.isfunction(value):
        assert value.__module__ == "pytest_asyncfaults", f"{name} says {value.__module__}"


def test_every_object_is_exported_once() -> None:
    by_id: dict[int, list[str]] = {}
    for name, value in EXPORTED.items():
        if inspect.isclass(value) or inspect.isfunction(value):
            by_id.setdefault(id(value), []).append(name)
    assert [names for names in by_id.values() if len(names) > 1] == []


def test_every_error_is_exported_and_derives_from_one_base() -> None:
    base = pytest_asyncfaults.AsyncFaultsError
    for module in _private_modules():
        for name, value in vars(module).items():
            if not (inspect.isclass(value) and value.__module__.startswith("pytest_asyncfaults")):
                continue
            if issubclass(value, Warning):
                assert EXPORTED.get(name) is value, f"{name} ({module.__name__}) is not exported"
            elif issubclass(value, BaseException):
                assert issubclass(value, base), f"{name} ({module.__name__})"
                assert EXPORTED.get(name) is value, f"{name} ({module.__name__}) is not exported"


def _our_classes(hint: object) -> Iterator[type]:
    """The package's classes named in a type hint, through unions and generics."""
    if inspect.isclass(hint) and hint.__module__.startswith("pytest_asyncfaults"):
        yield hint
    for arg in typing.get_args(hint):
        yield from _our_classes(arg)


def _namespace() -> dict[str, object]:
    """Every module's names: annotations may name what a module imports for type checking."""
    namespace: dict[str, object] = {}
    for module in _private_modules():
        namespace.update(vars(module))
    return namespace


NAMESPACE = _namespace()


def _hints(function: object) -> dict[str, object]:
    namespace = {**NAMESPACE, **vars(inspect.getmodule(function) or pytest_asyncfaults)}
    return typing.get_type_hints(function, globalns=namespace)


def _held_by_users() -> set[type]:
    """Classes a user holds: fixture values, and what exported classes' methods hand out."""
    held: set[type] = set()
    for value in vars(_plugin).values():
        if (callable(value) and hasattr(value, "_fixture_function")) or (
            getattr(value, "__pytest_wrapped__", None) is not None
        ):
            function = getattr(value, "_fixture_function", None) or value.__pytest_wrapped__.obj
            held.update(_our_classes(_hints(function).get("return")))
    for value in EXPORTED.values():
        if not inspect.isclass(value):
            continue
        for attribute, member in vars(value).items():
            if attribute.startswith("_") and attribute != "__init__":
                continue
            function = member.fget if isinstance(member, property) else member
            if inspect.isfunction(function):
                for hint in _hints(function).values():
                    held.update(_our_classes(hint))
    return held


def test_what_users_hold_is_exported() -> None:
    held = _held_by_users()
    assert pytest_asyncfaults.Faults in held  # the walk itself sees the fixtures
    missing = sorted(cls.__name__ for cls in held if EXPORTED.get(cls.__name__) is not cls)
    assert missing == []


def test_the_engine_core_is_internal() -> None:
    assert "FaultCore" not in pytest_asyncfaults.__all__


def test_toxic_types_are_toxiproxys_and_the_protocol_ones() -> None:
    assert set(pytest_asyncfaults.TOXIC_TYPES) == {
        "latency",
        "bandwidth",
        "slow_close",
        "timeout",
        "reset_peer",
        "slicer",
        "limit_data",
        "noop",
        "pg_login",
        "pg_error",
        "pg_delay",
        "pg_hang",
        "pg_cut",
        "smtp_reply",
        "smtp_delay",
        "smtp_cut",
    }


def test_the_lazy_table_and_the_type_checking_imports_agree() -> None:
    """The facade names each export twice (for mypy, and for loading on first use)."""
    import ast
    from pathlib import Path

    source = Path(pytest_asyncfaults.__file__).read_text()
    static = {
        alias.asname or alias.name: "." * node.level + (node.module or "")
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.level == 1
        for alias in node.names
        if alias.name != "__version__"
    }
    assert static == pytest_asyncfaults._WHERE


def test_every_hook_and_fixture_of_the_plugin_is_on_its_entry_point() -> None:
    """pytest reads hooks and fixtures off the entry-point module only: one defined beside
    it and not re-exported would never run."""
    from pytest_asyncfaults import _plugin
    from pytest_asyncfaults._plugin import _fixtures, _hooks, _options

    hooks = {
        name
        for module in (_hooks, _options)
        for name, _ in inspect.getmembers(module, inspect.isfunction)
        if name.startswith("pytest_")
    }
    fixtures = {
        name
        for name, value in vars(_fixtures).items()
        # pytest 8.4 wraps a fixture's function; before, it marks the function itself
        if type(value).__name__ == "FixtureFunctionDefinition"
        or hasattr(value, "_pytestfixturefunction")
    }
    assert len(fixtures) >= 10
    missing = {name for name in hooks | fixtures if getattr(_plugin, name, None) is None}
    assert not missing
