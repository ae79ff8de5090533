"""What importing the package, its sans-IO core and ``asyncfaults serve`` pull in.

The plugin is a ``pytest11`` entry point: pytest loads it into every suite on
a machine where it is installed, so importing the package must not import an
HTTP server, the services or (for users outside pytest) pytest itself. The
toxics are the sans-IO core: no event loop, no HTTP. ``asyncfaults serve`` is
a server, often run where pytest is not installed at all. Each check runs in
a fresh interpreter, since this one has imported everything already, and
names the offending modules when it fails.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Final

import pytest_asyncfaults

TIMEOUT: Final = 30.0
"""Seconds any child interpreter may take."""

SERVERS: Final = ("starlette", "uvicorn", "asgi_lifespan", "aiosmtpd")
PYTEST: Final = ("pytest", "_pytest")

SERVE_DRIVER: Final = """\
import json, runpy, sys

report = sys.argv[1]
sys.argv[1:] = ["serve", "--port", "0", "--seed", "1", "--exit-on-stdin-eof"]
try:
    runpy.run_module("pytest_asyncfaults", run_name="__main__", alter_sys=True)
finally:
    with open(report, "w") as file:
        json.dump(sorted(sys.modules), file)
"""
"""``python -m pytest_asyncfaults serve ...`` (the command's own code path, from
``__main__`` through the command line to the server), which writes the modules
it loaded to the file named by its first argument when it exits."""


def loaded_after(statement: str) -> list[str]:
    """The names in ``sys.modules`` of a fresh interpreter once it has run ``statement``."""
    code = "\n".join(
        [
            "import sys",
            statement,
            "names = sorted(sys.modules)",
            "import json",
            "print(json.dumps(names))",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{statement!r} failed:\n{done.stderr}"
    names = json.loads(done.stdout.splitlines()[-1])
    assert isinstance(names, list)
    return [str(name) for name in names]


def offending(modules: Iterable[str], forbidden: Iterable[str]) -> list[str]:
    """The modules that are one of ``forbidden`` or inside one of them."""
    prefixes = tuple(forbidden)
    return sorted(
        module
        for module in modules
        if any(module == name or module.startswith(name + ".") for name in prefixes)
    )


def read_line(stream: IO[bytes], timeout: float) -> str:
    """The first line ``stream`` delivers within ``timeout`` seconds ("" if none)."""
    deadline = time.monotonic() + timeout
    buffered = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while b"\n" not in buffered and (left := deadline - time.monotonic()) > 0:
            if selector.select(left):
                chunk = os.read(stream.fileno(), 4096)
                if not chunk:
                    break
                buffered += chunk
    return buffered.decode(errors="replace").partition("\n")[0]


def test_the_check_sees_an_import() -> None:
    # The tests below pass when nothing is found: make sure that finding works.
    modules = loaded_after("import pytest")
    assert "pytest" in offending(modules, PYTEST)
    assert "_pytest.config" in offending(modules, PYTEST)
    assert offending(["pytest_asyncfaults", "pytestx", "_pytestish"], PYTEST) == []


def test_package_imports_neither_pytest_nor_servers() -> None:
    modules = loaded_after("import pytest_asyncfaults")
    assert "pytest_asyncfaults" in modules
    found = offending(modules, (*PYTEST, *SERVERS))
    assert not found, f"import pytest_asyncfaults imported {found}"


def test_toxics_are_sans_io() -> None:
    modules = loaded_after("import pytest_asyncfaults._toxics")
    assert "pytest_asyncfaults._toxics" in modules
    found = offending(modules, (*PYTEST, "httpx", *SERVERS, "asyncio"))
    assert not found, f"import pytest_asyncfaults._toxics imported {found}"


def test_serve_does_not_import_pytest(tmp_path: Path) -> None:
    report = tmp_path / "modules.json"
    errors = tmp_path / "stderr.txt"
    with (
        errors.open("wb") as stderr,
        subprocess.Popen(
            [sys.executable, "-c", SERVE_DRIVER, str(report)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,  # a file: a pipe nobody reads could block the server
        ) as child,
    ):
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            ready = read_line(child.stdout, TIMEOUT)
        finally:
            child.stdin.close()  # --exit-on-stdin-eof: the server stops
            try:
                child.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(TIMEOUT)
    said = errors.read_text(errors="replace")
    assert "listening on http://" in ready, f"serve never got ready: {ready!r}\n{said}"
    assert child.returncode == 0, said
    found = offending(json.loads(report.read_text()), PYTEST)
    assert not found, f"asyncfaults serve imported {found}"


def test_version_is_the_distributions() -> None:
    code = (
        "import importlib.metadata, json, pytest_asyncfaults\n"
        "print(json.dumps([pytest_asyncfaults.__version__,"
        " importlib.metadata.version('pytest-asyncfaults')]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    package, distribution = json.loads(done.stdout)
    assert package == distribution


def _module_imports() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports when it loads.

    Imports inside functions and under ``TYPE_CHECKING`` are left out: they are
    how a module defers a dependency, and they cannot deadlock an import."""
    import ast

    root = Path(pytest_asyncfaults.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = package = parts[:-1]
        else:
            package = parts[:-1]
        name = ".".join(parts)
        graph[name] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - (node.level - 1)]
                graph[name].add(".".join([*base, *([node.module] if node.module else [])]))
    return graph


def test_no_import_cycle_inside_the_package() -> None:
    graph = _module_imports()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
