"""The chaos matrix, without pytest: its rows, its text, its JSON, merged shards, its page.

A run of ``@pytest.mark.chaos`` tests makes a matrix, scenario down, test
across. In CI that run is often cut in pieces (a job per scenario, xdist
workers on several machines), each writing its own JSON report
(``--asyncfaults-report``); ``asyncfaults report merge`` joins them into the
matrix one run would have made, and draws it as a self-contained HTML page.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, final

from .._address import mask_secrets
from .._exceptions import InvalidError

REPORT_VERSION: Final = 1
OUTCOMES: Final = ("passed", "failed", "error", "skipped")
_WORDS: Final = {"passed": "passed", "failed": "FAILED", "error": "ERROR", "skipped": "skipped"}


@final
@dataclass(frozen=True)
class MatrixRow:
    """What one scenario did to one test."""

    test: str
    scenario: str
    outcome: str
    reason: str
    duration: float
    timeline: str | None
    nodeid: str

    def to_json(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "scenario": self.scenario,
            "outcome": self.outcome,
            "reason": self.reason,
            "duration": self.duration,
            "timeline": self.timeline,
            "nodeid": self.nodeid,
        }


def matrix_document(
    *, seed: int | None, scenarios: Sequence[Mapping[str, Any]], rows: Sequence[MatrixRow]
) -> dict[str, Any]:
    """The JSON report: the seed, the scenarios, a result per test and scenario, the counts."""
    ordered = sorted(rows, key=lambda row: (row.test, row.scenario))
    return {
        "version": REPORT_VERSION,
        "seed": seed,
        "scenarios": [dict(scenario) for scenario in scenarios],
        "results": [row.to_json() for row in ordered],
        "summary": {
            outcome: sum(1 for row in ordered if row.outcome == outcome) for outcome in OUTCOMES
        },
    }


def dump_document(document: Mapping[str, Any]) -> str:
    """The report's text: no password the run knows of, nor any URL's, in it."""
    return mask_secrets(json.dumps(document, indent=2)) + "\n"


def rows_of(document: Mapping[str, Any]) -> list[MatrixRow]:
    return [
        MatrixRow(
            test=str(result["test"]),
            scenario=str(result["scenario"]),
            outcome=str(result["outcome"]),
            reason=str(result.get("reason") or ""),
            duration=float(result.get("duration") or 0.0),
            timeline=None if result.get("timeline") is None else str(result["timeline"]),
            nodeid=str(result.get("nodeid") or f"{result['test']}[{result['scenario']}]"),
        )
        for result in document["results"]
    ]


# -- reading and merging shards ------------------------------------------------------------------


def read_report(path: Path) -> dict[str, Any]:
    """A JSON report written by ``--asyncfaults-report``, checked enough to merge."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidError(f"{path}: is not a JSON report of asyncfaults ({exc})") from None
    if not isinstance(document, dict) or document.get("version") != REPORT_VERSION:
        version = document.get("version") if isinstance(document, dict) else None
        raise InvalidError(
            f"{path}: version={version!r} is not valid: expected a chaos report of "
            f"--asyncfaults-report (version {REPORT_VERSION})"
        )
    results = document.get("results")
    if not isinstance(results, list) or not all(
        isinstance(result, dict)
        and isinstance(result.get("test"), str)
        and isinstance(result.get("scenario"), str)
        and result.get("outcome") in OUTCOMES
        for result in results
    ):
        raise InvalidError(
            f"{path}: results is not valid: expected a list of {{test, scenario, outcome}} "
            f"with outcome one of {', '.join(OUTCOMES)}"
        )
    if not isinstance(document.get("scenarios", []), list):
        raise InvalidError(f"{path}: scenarios is not valid: expected a list")
    return document


def relocate_timelines(document: dict[str, Any], report: Path) -> None:
    """Point each timeline at where it is now: a shard's report names the timelines where its
    CI job wrote them; downloaded as artifacts beside the report, they are found again
    under the report's directory by their file name."""
    found: dict[str, Path] | None = None
    for result in document["results"]:
        timeline = result.get("timeline")
        if not isinstance(timeline, str) or Path(timeline).exists():
            continue
        if found is None:
            found = {}
            for candidate in sorted(report.resolve().parent.rglob("*.html")):
                found.setdefault(candidate.name, candidate)
        moved = found.get(Path(timeline).name)
        if moved is not None:
            result["timeline"] = str(moved)


def merge_reports(shards: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """One report from the reports of a matrix's shards (``(name, document)`` each).

    A test and scenario may appear in one shard only: twice means two runs of
    the same cell, and which one counts is not for the merge to guess. The
    scenarios are the union, by name; the seed is kept when the shards share
    it, and each shard's is listed in ``seeds`` otherwise.
    """
    if not shards:
        raise InvalidError("no report to merge: name the JSON reports of the shards")
    rows: dict[tuple[str, str], tuple[str, MatrixRow]] = {}
    scenarios: dict[str, dict[str, Any]] = {}
    seeds: dict[str, int | None] = {}
    for name, document in shards:
        seeds[name] = document.get("seed")
        for scenario in document.get("scenarios", []):
            if isinstance(scenario, dict) and isinstance(scenario.get("name"), str):
                scenarios.setdefault(scenario["name"], scenario)
        for row in rows_of(document):
            key = (row.test, row.scenario)
            if key in rows:
                raise InvalidError(
                    f"{name}: {row.scenario} x {row.test} is also in {rows[key][0]}: each "
                    f"cell of the matrix belongs to one shard (split the run by scenario or "
                    f"by test, not both ways at once)"
                )
            rows[key] = (name, row)
    distinct = set(seeds.values())
    document = matrix_document(
        seed=distinct.pop() if len(distinct) == 1 else None,
        scenarios=sorted(scenarios.values(), key=lambda scenario: str(scenario["name"])),
        rows=[row for _, row in rows.values()],
    )
    if len(set(seeds.values())) > 1:
        document["seeds"] = seeds
    document["shards"] = [name for name, _ in shards]
    return document


# -- the matrix as text --------------------------------------------------------------------------


def format_matrix(rows: Sequence[MatrixRow]) -> list[str]:
    """Scenario down, test across, a word a cell; then each failure's reason, in full."""
    tests = list(dict.fromkeys(row.test for row in rows))
    scenarios = sorted(dict.fromkeys(row.scenario for row in rows))
    verdicts = {(row.scenario, row.test): row for row in rows}
    labels = column_labels(tests)
    first = max(len("scenario"), *(len(name) for name in scenarios)) + 2
    widths = [max(len(label), len("skipped")) for label in labels]
    lines = [
        "scenario".ljust(first)
        + "  ".join(name.ljust(w) for name, w in zip(labels, widths, strict=True))
    ]
    for scenario in scenarios:
        cells = []
        for test, column in zip(tests, widths, strict=True):
            row = verdicts.get((scenario, test))
            cells.append(
                ("-" if row is None else _WORDS.get(row.outcome, row.outcome)).ljust(column)
            )
        lines.append((scenario.ljust(first) + "  ".join(cells)).rstrip())
    failed = [row for row in rows if row.outcome in ("failed", "error")]
    if failed:
        lines.append("")
        for row in sorted(failed, key=lambda row: (row.test, row.scenario)):
            label = labels[tests.index(row.test)]
            head = f"{_WORDS[row.outcome]} {row.scenario} x {label}: "
            lines.append(head + (row.reason or "(no reason given)"))
    if labels != tests:
        lines += ["", *(f"{label} = {test}" for label, test in zip(labels, tests, strict=True))]
    lines.append(_counts(rows, tests, scenarios))
    return lines


def _counts(rows: Sequence[MatrixRow], tests: Sequence[str], scenarios: Sequence[str]) -> str:
    counts = {outcome: sum(1 for row in rows if row.outcome == outcome) for outcome in _WORDS}
    return ", ".join(f"{count} {outcome}" for outcome, count in counts.items() if count) + (
        f" ({len(rows)} runs of {len(tests)} test{'s' if len(tests) != 1 else ''} "
        f"x {len(scenarios)} scenario{'s' if len(scenarios) != 1 else ''})"
    )


def column_labels(tests: Sequence[str]) -> list[str]:
    """As short as the columns can be told apart: ``[buggy]`` when only parameters differ."""
    names = [test.rsplit("::", 1)[-1] for test in tests]
    bases = {name.split("[", 1)[0] for name in names}
    if len(bases) == 1 and len(names) > 1 and all("[" in name for name in names):
        return ["[" + name.split("[", 1)[1] for name in names]
    return names if len(set(names)) == len(names) else list(tests)


# -- the matrix as a page ------------------------------------------------------------------------

_STYLE: Final = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1f2328; }
h1 { font-size: 20px; margin: 0 0 4px; }
p.meta { color: #59636e; margin: 0 0 16px; }
table.matrix { border-collapse: collapse; margin-bottom: 20px; }
table.matrix th, table.matrix td { border: 1px solid #d1d9e0; padding: 4px 10px; }
table.matrix th { background: #f6f8fa; text-align: left; font-weight: 600; }
td.cell { text-align: center; font-weight: 600; min-width: 70px; }
td.passed { background: #2da44e; color: #fff; }
td.failed, td.error { background: #cf222e; color: #fff; }
td.skipped { background: #eaeef2; color: #59636e; }
td.missing { background: #fff; color: #8c959f; }
td.cell a { color: inherit; }
ol.failures li { margin-bottom: 10px; }
ol.failures li:target { outline: 3px solid #bf8700; }
.reason { font-family: ui-monospace, monospace; white-space: pre-wrap; }
"""


def render_matrix_html(document: Mapping[str, Any], *, base: Path | None = None) -> str:
    """The matrix as one self-contained page: no script, no network; each failed cell links
    to its reason below, and the reason to the failure's timeline (relative to ``base``, the
    page's directory, so that the page and the timelines move together as CI artifacts)."""
    rows = rows_of(document)
    tests = list(dict.fromkeys(row.test for row in rows))
    scenarios = sorted(dict.fromkeys(row.scenario for row in rows))
    verdicts = {(row.scenario, row.test): row for row in rows}
    labels = column_labels(tests)
    failed = sorted(
        (row for row in rows if row.outcome in ("failed", "error")),
        key=lambda row: (row.test, row.scenario),
    )
    anchors = {(row.scenario, row.test): f"failure-{n}" for n, row in enumerate(failed, 1)}
    e = html.escape
    seed = document.get("seed")
    shards = document.get("shards") or []
    meta = [_counts(rows, tests, scenarios)]
    meta.append(f"seed {seed}" if seed is not None else "seeds differ by shard")
    if shards:
        meta.append(f"merged from {len(shards)} report{'s' if len(shards) != 1 else ''}")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>asyncfaults chaos matrix</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>asyncfaults chaos matrix</h1>",
        f'<p class="meta">{e(" · ".join(meta))}</p>',
        '<table class="matrix"><thead><tr><th>scenario</th>',
    ]
    out += [
        f'<th title="{e(test)}">{e(label)}</th>' for label, test in zip(labels, tests, strict=True)
    ]
    out.append("</tr></thead><tbody>")
    for scenario in scenarios:
        out.append(f'<tr data-scenario="{e(scenario)}"><th>{e(scenario)}</th>')
        for test in tests:
            row = verdicts.get((scenario, test))
            if row is None:
                out.append(f'<td class="cell missing" data-test="{e(test)}">-</td>')
                continue
            word = e(_WORDS.get(row.outcome, row.outcome))
            anchor = anchors.get((scenario, test))
            body = f'<a href="#{anchor}">{word}</a>' if anchor else word
            tip = f' title="{e(row.reason)}"' if row.reason else ""
            out.append(
                f'<td class="cell {e(row.outcome)}" data-test="{e(test)}" '
                f'data-outcome="{e(row.outcome)}"{tip}>{body}</td>'
            )
        out.append("</tr>")
    out.append("</tbody></table>")
    if failed:
        out.append('<h2>Failures</h2><ol class="failures">')
        for row in failed:
            anchor = anchors[(row.scenario, row.test)]
            label = labels[tests.index(row.test)]
            link = ""
            if row.timeline:
                href = _href(row.timeline, base)
                link = f' <a class="timeline" href="{e(href)}">timeline</a>'
            out.append(
                f'<li id="{anchor}" data-scenario="{e(row.scenario)}" data-test="{e(row.test)}">'
                f"<strong>{e(_WORDS[row.outcome])} {e(row.scenario)} x {e(label)}</strong>"
                f'{link}<div class="reason">{e(row.reason or "(no reason given)")}</div></li>'
            )
        out.append("</ol>")
    if labels != tests:
        out.append("<h2>Columns</h2><ul>")
        out += [
            f"<li><code>{e(label)}</code> = <code>{e(test)}</code></li>"
            for label, test in zip(labels, tests, strict=True)
        ]
        out.append("</ul>")
    out.append("</body></html>")
    return mask_secrets("\n".join(out)) + "\n"


def _href(timeline: str, base: Path | None) -> str:
    path = Path(timeline)
    if base is not None and path.is_absolute():
        try:
            return Path(os.path.relpath(path, base)).as_posix()
        except ValueError:  # another drive (Windows)
            pass
    return path.as_uri() if path.is_absolute() else path.as_posix()
