"""``asyncfaults report merge``: one chaos matrix from the JSON reports of its shards.

CI cuts a matrix in pieces: a job per scenario, xdist workers on several
machines. Each piece writes its report (``--asyncfaults-report``); the merge
reads them all and writes the matrix one run would have made: the JSON report
(``-o``), the page (``--html``) and the text, on standard output.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .._exceptions import InvalidError
from .._scenario._matrix import (
    dump_document,
    format_matrix,
    merge_reports,
    read_report,
    relocate_timelines,
    render_matrix_html,
    rows_of,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def run_merge(
    reports: Sequence[str], output: str | None, page: str | None, out: TextIO = sys.stdout
) -> int:
    """Merge; exit 0 when every cell passed or was skipped, 1 when one failed, 2 bad usage."""
    try:
        shards = [(name, read_report(Path(name))) for name in reports]
        for name, document in shards:
            relocate_timelines(document, Path(name))
        document = merge_reports(shards)
        if output is not None:
            _write(Path(output), dump_document(document))
        if page is not None:
            target = Path(page)
            _write(target, render_matrix_html(document, base=target.resolve().parent))
    except InvalidError as exc:
        print(f"asyncfaults report merge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    rows = rows_of(document)
    print(f"asyncfaults chaos matrix, merged from {len(shards)} reports", file=out)
    for line in format_matrix(rows) if rows else ["(no chaos test in these reports)"]:
        print(line, file=out)
    for what, where in (("report", output), ("page", page)):
        if where is not None:
            print(f"asyncfaults: {what} written to {where}", file=out)
    failed = any(row.outcome in ("failed", "error") for row in rows)
    return EXIT_FAILED if failed else EXIT_OK


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidError(f"{path}: cannot be written: {exc.strerror or exc}") from None
