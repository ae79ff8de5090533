"""A corpus of small apps on real libraries, each buggy and fixed, with the tests a user writes.

Each case in ``tests/corpus/`` is an app written the way people write one
(FastAPI, Starlette, Quart, Litestar; asyncpg, SQLAlchemy, smtplib, aiosmtplib; logging,
loguru), once with the bug and once with its fix, and one test module a user of
that app would write, parametrized over the two (``[buggy]``, ``[fixed]``). It
runs in a pytest of its own, against this run's PostgreSQL server, with every
setting at its default: no ``allow``, no raised ``blocked_loop_threshold``.

- the fixed app's tests all pass: any failure there is a false alarm;
- the buggy app's tests fail where the bug is, and the report names the app's
  line with the bug (found by its ``# BUG`` comment, so the numbers are real).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest
from pathological import INI

from pytest_asyncfaults import PostgresServer

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.plugin

CORPUS: Final = Path(__file__).with_name("corpus")
RUN_BOUND: Final = 90.0


@dataclass(frozen=True)
class Case:
    """An app of the corpus: ``corpus_<name>_{buggy,fixed,check}.py``."""

    name: str
    caught: dict[str, str]
    """Each test the buggy app fails, and what of the report must be in its output."""
    passes_buggy: tuple[str, ...] = ()
    """Tests the buggy app passes too (the fault does not touch its bug)."""
    ini: tuple[str, ...] = field(default=())

    def tests(self) -> list[str]:
        source = (CORPUS / f"corpus_{self.name}_check.py").read_text()
        return re.findall(r"^async def (test_\w+)", source, re.MULTILINE)


def bug_line(module: str, marker: str = "# BUG") -> str:
    """``module.py:LINE`` of the (first) line carrying ``marker`` in a corpus module."""
    lines = (CORPUS / f"{module}.py").read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if marker in line:
            return f"{module}.py:{number}"
    raise AssertionError(f"no {marker!r} in {module}.py")


CASES: Final = [
    Case(
        "fastapi_pool",
        caught={
            "test_a_blackholed_database_times_out": "*> {bug} in record_order*",
            "test_a_slow_database_times_out": "*> {bug} in record_order*",
        },
        passes_buggy=("test_an_order_is_recorded", "test_a_reset_connection_is_logged"),
    ),
    Case(
        "sqla",
        caught={
            "test_a_blackholed_database_answers_503": "*> {bug} in stock*",
            "test_a_slow_database_answers_503": "*> {bug} in stock*",
        },
        passes_buggy=("test_the_stock_is_counted",),
        ini=(
            "asyncfaults_env =",
            "    CORPUS_DATABASE_URL=postgresql+asyncpg://{credentials}@{{postgres.listen}}/{db}",
        ),
    ),
    Case(
        "quart_pool",
        caught={
            "test_a_blackholed_database_times_out": "*> {bug} in record_order*",
            "test_a_slow_database_times_out": "*> {bug} in record_order*",
        },
        passes_buggy=("test_an_order_is_recorded", "test_a_reset_connection_is_logged"),
    ),
    Case(
        "litestar_pool",
        caught={
            "test_a_blackholed_database_times_out": "*> {bug} in record_order*",
            "test_a_slow_database_times_out": "*> {bug} in record_order*",
        },
        passes_buggy=("test_an_order_is_recorded", "test_a_reset_connection_is_logged"),
    ),
    Case(
        "loguru",
        # an exception dropped inside the task leaves no failed task: the user's
        # assert_failed says the job completed; the report should name the except
        caught={"test_a_blackholed_database_is_logged": "*{bug}*"},
        passes_buggy=("test_the_count_is_refreshed",),
    ),
    Case(
        "smtplib",
        caught={"test_a_blackholed_mail_server_times_out": "*> {bug} in send_receipt*"},
        passes_buggy=("test_the_receipt_is_mailed",),
    ),
    Case(
        "aiosmtplib",
        caught={"test_a_blackholed_mail_server_times_out": "*> {bug} in send_receipt*"},
        passes_buggy=("test_the_receipt_is_mailed",),
    ),
]


def setup_case(pytester: pytest.Pytester, case: Case, postgres_server: PostgresServer) -> None:
    """The case's app modules and its test module, and the inner project's ini."""
    for source in CORPUS.glob(f"corpus_{case.name}_*.py"):
        shutil.copy(source, pytester.path / source.name)
    (pytester.path / f"corpus_{case.name}_check.py").rename(pytester.path / f"test_{case.name}.py")
    credentials, _, rest = postgres_server.dsn.partition("://")[2].rpartition("@")
    db = rest.partition("/")[2].partition("?")[0]
    extra = "\n".join(case.ini).format(credentials=credentials, db=db)
    pytester.makeini(INI + extra + "\n")


def run_case(
    pytester: pytest.Pytester,
    backend_args: list[str],
    postgres_server: PostgresServer,
    case: Case,
    variant: str,
) -> pytest.RunResult:
    setup_case(pytester, case, postgres_server)
    return pytester.runpytest_subprocess(
        *backend_args,
        "-p",
        "no:cacheprovider",
        f"--asyncfaults-postgres-dsn={postgres_server.dsn}",
        "-k",
        variant,
        timeout=RUN_BOUND,
    )


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_the_fixed_app_passes_with_the_defaults(
    pytester: pytest.Pytester,
    backend_args: list[str],
    postgres_server: PostgresServer,
    case: Case,
) -> None:
    result = run_case(pytester, backend_args, postgres_server, case, "fixed")
    result.assert_outcomes(passed=len(case.tests()))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_the_buggy_app_fails_naming_its_line(
    pytester: pytest.Pytester,
    backend_args: list[str],
    postgres_server: PostgresServer,
    case: Case,
) -> None:
    assert set(case.caught) | set(case.passes_buggy) == set(case.tests())
    result = run_case(pytester, backend_args, postgres_server, case, "buggy")
    result.assert_outcomes(passed=len(case.passes_buggy), failed=len(case.caught))
    bug = bug_line(f"corpus_{case.name}_buggy")
    for test, report_line in case.caught.items():
        result.stdout.fnmatch_lines(
            [f"*_ {test}[[]buggy] _*", report_line.format(bug=bug)], consecutive=False
        )
