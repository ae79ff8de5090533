"""The example's own proof: the buggy upload app under every shipped scenario.

``test_csv_upload_chaos.py`` is run the way a user's CI runs it: a pytest of
its own from the repository's root (whose ``pyproject.toml`` points at
``scenarios/``), with a JSON report and a seed, here with
``CSV_UPLOAD_APPS=buggy``. The report must say that each scenario caught the
bug the case study took six hours to find, for the right reason: the hangs
are hangs, the swallowed failures are swallowed; and that a seed decides the
"30% of the time" draw of ``flaky_30`` the same way on every run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from pytest_asyncfaults._engine._core import draw
from pytest_asyncfaults._scenario._toml import load_scenario

ROOT = Path(__file__).resolve().parents[3]
CHAOS_TEST = "examples/csv_upload/tests/test_csv_upload_chaos.py"
SCENARIOS = ROOT / "scenarios"
RUN_LIMIT = 300
"""Seconds one chaos run may take (about 35 s here: three hangs wait out their deadlines)."""

FLAKY = load_scenario(SCENARIOS / "flaky_30.toml")


def first_connection_resets(seed: int) -> bool:
    """What the engine draws for ``flaky_30`` under ``seed``, computed as it does.

    The key is the seed, the proxy's name (``postgres``: the embedded engine
    adds no prefix), the toxic's name and version, the connection's number
    counted from when the toxic was added, and the stream. The buggy job opens
    one connection per upload: number 1.
    """
    (toxic,) = FLAKY.toxics
    spec = toxic.spec
    rng = draw(seed, toxic.proxy, spec.name, 0, 1, spec.stream)
    return rng.random() < spec.toxicity


SEEDS = range(1, 1000)
RESET_SEED = next(seed for seed in SEEDS if first_connection_resets(seed))
CLEAN_SEED = next(seed for seed in SEEDS if not first_connection_resets(seed))


def start_run(report: Path, seed: int, *args: str) -> subprocess.Popen[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        # The outer run's own settings (an xdist worker, PYTEST_ADDOPTS) are not CI's; a
        # Toxiproxy server would draw with its own randomness, not the seed.
        if not name.startswith("PYTEST_") and name != "TOXIPROXY_URL"
    }
    env["CSV_UPLOAD_APPS"] = "buggy"
    command = [
        sys.executable,
        "-m",
        "pytest",
        CHAOS_TEST,
        "-p",
        "no:cacheprovider",
        "-q",
        "--asyncfaults-report",
        str(report),
        "--asyncfaults-seed",
        str(seed),
        "-p",
        "no:faker",  # the test tools' plugins: a second and a half at each start
        "-p",
        "no:hypothesispytest",
        "--asyncfaults-timeline-dir",
        str(report.parent / "timelines"),
        *args,
    ]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish_run(process: subprocess.Popen[str], report: Path) -> dict[str, Any]:
    """The JSON report of a finished run; its output when it went wrong."""
    try:
        output, _ = process.communicate(timeout=RUN_LIMIT)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"the chaos run took over {RUN_LIMIT} s:\n{output}")
    # Failed tests (1) are what the buggy app is for; anything else is the run's own trouble.
    if process.returncode != pytest.ExitCode.TESTS_FAILED and process.returncode != 0:
        pytest.fail(f"the chaos run ended with {process.returncode}:\n{output}")
    document: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    document["output"] = output
    return document


def verdicts(document: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """scenario -> (outcome, reason), for the one (buggy) test."""
    return {row["scenario"]: (row["outcome"], row["reason"]) for row in document["results"]}


@pytest.fixture(scope="module")
def buggy_matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The buggy app's whole matrix (half a minute): only the test of its verdicts uses it,
    so that no two workers run it."""
    report = tmp_path_factory.mktemp("matrix") / "chaos.json"
    return finish_run(start_run(report, RESET_SEED), report)


def test_the_buggy_app_fails_each_scenario_for_its_reason(buggy_matrix: dict[str, Any]) -> None:
    found = verdicts(buggy_matrix)
    assert buggy_matrix["seed"] == RESET_SEED
    assert sorted(found) == sorted(path.stem for path in SCENARIOS.glob("*.toml"))
    assert {row["test"] for row in buggy_matrix["results"]} == {
        f"{CHAOS_TEST}::test_an_upload_under_chaos[buggy]"
    }

    # No timeout of its own: the job waits for ever on a database or a mail server
    # that does not answer, and the plugin reports the hang at the scenario's deadline.
    for name in ("db_blackhole", "db_login_stall", "smtp_blackhole", "bandwidth_starvation"):
        settle = load_scenario(SCENARIOS / f"{name}.toml").expect.settle
        assert found[name] == ("failed", f"hang: 1 task still pending after {settle:g} s"), name

    # Failures printed and swallowed: the job "completes" with nothing in the table or
    # no mail sent. flaky_30 resets the connection under this seed.
    swallowed = "a failure was swallowed"
    for name in ("db_reset_mid_query", "flaky_30", "db_serialization_failure"):
        assert found[name] == (
            "failed",
            f"AssertionError: the job completed, yet 0 of 200 rows are in: {swallowed}",
        ), name
    for name in ("smtp_reset", "smtp_greylisted"):
        assert found[name] == (
            "failed",
            f"AssertionError: the job completed, yet no mail was sent: {swallowed}",
        ), name

    # The server stopped under the 100th INSERT: rows one by one, no transaction, so the
    # first 99 stay. The connection to the mail server dropped after the message, before
    # its reply: the buggy job swallows the error and "completes", where the scenario
    # expects the failure said out loud.
    assert found["db_admin_shutdown_mid_insert"] == (
        "failed",
        "AssertionError: half an upload is in the table: 99 of 200 rows",
    )
    outcome, reason = found["smtp_cut_after_data"]
    assert outcome == "failed"
    assert re.fullmatch(
        r"expected a SMTPServerDisconnected, got: 'ASGI POST /upload #\d+' completed", reason
    ), reason

    # The outage window opens 0.2 s into the test: a job still inserting then leaves half
    # an upload behind (or none, if it was still connecting); a job that was done by then
    # has nothing to lose. Never a hang: the window closes the connections it held.
    outcome, reason = found["db_outage_window"]
    assert outcome == "passed" or (
        outcome == "failed" and ("half an upload is in the table" in reason or swallowed in reason)
    ), found["db_outage_window"]

    # Slow is not broken: the buggy app copes with latency and a slow close.
    assert found["db_latency_spike"] == ("passed", "")
    assert found["slow_close"] == ("passed", "")

    failed = sum(1 for outcome, _ in found.values() if outcome == "failed")
    assert buggy_matrix["summary"] == {
        "passed": len(found) - failed,
        "failed": failed,
        "error": 0,
        "skipped": 0,
    }
    assert "asyncfaults chaos matrix" in buggy_matrix["output"]


def test_a_seed_decides_the_flaky_draw_the_same_way_on_every_run(tmp_path: Path) -> None:
    assert first_connection_resets(RESET_SEED)
    assert not first_connection_resets(CLEAN_SEED)
    outcomes: dict[int, list[tuple[str, str]]] = {}
    for seed in (RESET_SEED, CLEAN_SEED):
        # Two runs side by side: each starts its own engine and its own PostgreSQL.
        reports = [tmp_path / f"seed{seed}-run{run}.json" for run in (1, 2)]
        processes = [start_run(report, seed, "-k", "flaky_30") for report in reports]
        documents = [
            finish_run(process, report) for process, report in zip(processes, reports, strict=True)
        ]
        outcomes[seed] = [verdicts(document)["flaky_30"] for document in documents]
    reset = (
        "failed",
        "AssertionError: the job completed, yet 0 of 200 rows are in: a failure was swallowed",
    )
    # Run alone (-k) as after the other scenarios on the same proxy (the whole matrix's
    # flaky_30 row, in the test above): the same draw.
    assert outcomes[RESET_SEED] == [reset, reset]
    assert outcomes[CLEAN_SEED] == [("passed", ""), ("passed", "")]


def test_the_timeline_of_the_hang_shows_it_in_a_browser(tmp_path: Path) -> None:
    """The picture the failure report points at, as Chromium draws it (the buggy app's hang
    under the blackholed database, in a run of that scenario alone)."""
    report = tmp_path / "chaos.json"
    buggy_matrix = finish_run(start_run(report, RESET_SEED, "-k", "db_blackhole"), report)
    from test_timeline import parse
    from test_timeline_browser import paint, render

    from pytest_asyncfaults._timeline import FAULT, PENDING

    (row,) = [row for row in buggy_matrix["results"] if row["scenario"] == "db_blackhole"]
    page = Path(row["timeline"])
    assert f"Timeline of this test: {page} (open it in a browser)" in buggy_matrix["output"]
    with tempfile.TemporaryDirectory(prefix="asyncfaults-chromium-") as name:
        dom_text, image = render(page, Path(name), 1400, 900)
    dom = parse(dom_text)
    # The upload's background work, pending until the deadline, with its await chain:
    (job,) = dom.find_all("g", "bar", "task", "pending")
    label = job.attrs["data-label"]
    assert label.startswith("ASGI POST /upload #"), label
    assert "state: pending" in job.title()
    chain = dom.one("details", "chain", label=label).one("pre").text()
    assert "conn = await asyncpg.connect(settings.database_url)  # BUG: no timeout" in chain
    # ...under the postgres proxy's blackhole, on for the whole test,
    fault = dom.one("g", "bar", "fault", proxy="postgres")
    assert fault.attrs["data-label"] == "timeout downstream timeout=0"
    # ...up to the settle deadline of the scenario.
    assert "settle deadline (5 s)" in dom.one("g", "mark").text()
    assert "scenario: db_blackhole" in " ".join(dom.text().split())
    # And it is painted: a long red bar under a long amber one.
    hung, faulted = paint(image, PENDING), paint(image, FAULT)
    assert hung.longest > 600, hung
    assert faulted.longest > 600, faulted
    assert hung.row > faulted.row, (hung, faulted)
