"""``asyncfaults report merge``: a chaos matrix cut in shards, joined again, and its page.

The matrix here is run twice: once whole, once in three shards (a pytest run
per scenario, as a CI job per scenario would), each writing its JSON report.
The merge of the three must be the matrix of the whole run, cell for cell and
reason for reason; its page is then opened in headless Chromium, which must
show the matrix and take a failed cell's link to its reason and timeline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest
from test_chaos import BLACKHOLE, HEALTHY, make_project, run
from test_timeline import parse
from test_timeline_browser import paint, render

from pytest_asyncfaults._scenario._matrix import format_matrix, rows_of

if TYPE_CHECKING:
    from conftest import Peer

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.plugin

SLOW: Final = """
[[faults]]
proxy = "echo"
toxic = "latency"
attributes = { latency = 50 }

[expect]
settle = 2
outcome = "completed"
"""
SCENARIOS: Final = {"healthy": HEALTHY, "blackhole": BLACKHOLE, "slow": SLOW}
TESTS: Final = {
    "test_shards": """
        import pytest

        from jobs import ask, start


        @pytest.mark.chaos
        async def test_careful(tasks, faults):
            start(ask(faults.echo, limit=0.3))
            await tasks.settle()


        @pytest.mark.chaos
        async def test_careless(tasks, faults):
            start(ask(faults.echo))  # no limit: the blackhole hangs it
            await tasks.settle()
        """
}


def merge(pytester: pytest.Pytester, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_asyncfaults", "report", "merge", *args],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def cells(document: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str]]:
    return {
        (result["test"], result["scenario"]): (result["outcome"], result["reason"])
        for result in document["results"]
    }


def test_three_shards_merge_into_the_matrix_of_one_run(
    pytester: pytest.Pytester, echo_server: Peer, backend_args: list[str], tmp_path: Path
) -> None:
    make_project(pytester, echo_server, SCENARIOS, TESTS)
    whole_run = run(
        pytester, "--asyncfaults-report=whole.json", "--asyncfaults-seed=5", *backend_args
    )
    whole_run.assert_outcomes(passed=5, failed=1)
    for scenario in SCENARIOS:
        run(
            pytester,
            f"--asyncfaults-report=shard-{scenario}.json",
            "--asyncfaults-seed=5",
            "-k",
            scenario,
            *backend_args,
        )
    shards = [f"shard-{scenario}.json" for scenario in SCENARIOS]
    merged = merge(pytester, *shards, "-o", "matrix.json", "--html", "site/matrix.html")
    assert merged.returncode == 1, merged.stderr  # a cell failed: the gate of the matrix
    whole = json.loads((pytester.path / "whole.json").read_text())
    joined = json.loads((pytester.path / "matrix.json").read_text())

    assert cells(joined) == cells(whole)
    assert len(cells(joined)) == 6
    assert cells(joined)[("test_shards.py::test_careless", "blackhole")][0] == "failed"
    assert (
        joined["summary"]
        == whole["summary"]
        == {
            "passed": 5,
            "failed": 1,
            "error": 0,
            "skipped": 0,
        }
    )
    assert joined["seed"] == whole["seed"] == 5
    assert {s["name"] for s in joined["scenarios"]} == {s["name"] for s in whole["scenarios"]}
    assert format_matrix(rows_of(joined)) == format_matrix(rows_of(whole))
    # the text printed is the terminal's matrix of the whole run
    printed = merged.stdout.splitlines()
    for line in format_matrix(rows_of(whole)):
        assert line in printed, (line, merged.stdout)

    # one cell in two shards is refused, naming both
    twice = merge(pytester, shards[0], "whole.json")
    assert twice.returncode == 2
    assert "is also in shard-healthy.json" in twice.stderr, twice.stderr

    # as CI artifacts: the reports and timelines downloaded elsewhere, the originals gone
    artifacts = pytester.path / "artifacts"
    artifacts.mkdir()
    for shard in shards:
        (pytester.path / shard).rename(artifacts / shard)
    (pytester.path / "timelines").rename(artifacts / "timelines")
    moved = merge(
        pytester,
        *(f"artifacts/{shard}" for shard in shards),
        "--html",
        "artifacts/site/matrix.html",
    )
    assert moved.returncode == 1, moved.stderr
    check_page_in_chromium(artifacts / "site" / "matrix.html", tmp_path)


def check_page_in_chromium(page: Path, workdir: Path) -> None:
    dom_text, image = render(page, workdir, 1000, 700)
    dom = parse(dom_text)
    table = dom.one("table", "matrix")
    assert [
        row.attrs["data-scenario"] for row in table.find_all("tr") if row.attrs.get("data-scenario")
    ] == ["blackhole", "healthy", "slow"]
    assert len(table.find_all("td", "cell")) == 6
    assert len(table.find_all("td", "cell", outcome="passed")) == 5
    failed = table.one("td", "cell", outcome="failed")
    assert failed.attrs["data-test"] == "test_shards.py::test_careless"
    link = failed.one("a")
    assert link.text() == "FAILED"
    anchor = link.attrs["href"].removeprefix("#")
    reason = dom.one("li", scenario="blackhole", test="test_shards.py::test_careless")
    assert reason.attrs["id"] == anchor
    assert "hang: 1 task still pending" in reason.one("div", "reason").text()
    timeline = reason.one("a", "timeline").attrs["href"]
    assert not timeline.startswith(("/", "file:")), timeline  # relative: moves with the page
    assert (page.parent / timeline).is_file(), timeline

    red, green = paint(image, "#cf222e"), paint(image, "#2da44e")
    assert red.pixels > 500, red  # the failed cell, painted
    assert green.pixels > 5 * 500, green  # the five that passed
