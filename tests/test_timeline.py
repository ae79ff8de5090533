"""The timeline renderer on its own: what the HTML says and where the SVG draws it.

The document is parsed back with the standard library's HTML parser, so the
assertions are about elements and attributes as a browser would see them,
not about how the text happens to be laid out.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pytest_asyncfaults._timeline import (
    ANSWERING,
    BACKGROUND,
    FAULT,
    PENDING,
    PROTOCOL,
    STALL,
    STATE_COLOURS,
    FaultSpan,
    Mark,
    ProtocolMark,
    RequestSpan,
    StallSpan,
    TaskSpan,
    Timeline,
    render_timeline,
    write_timeline,
)

CHAIN = (
    "upload-background (pending for 2.98 s)\n"
    "  process_upload() at app.py:57\n"
    "  store_rows() at app.py:71\n"
    "  asyncpg.connect() at asyncpg/connection.py:2329\n"
    "  _connect_addr() at asyncpg/connect_utils.py:1012\n"
    "  waiting on <Future pending>"
)


def hang_timeline() -> Timeline:
    """The picture of the seed's hang: answered at once, its background task stuck on postgres."""
    return Timeline(
        title="tests/test_app.py::test_upload[db_blackhole]",
        summary=(
            "1 background task still pending after 3 s: upload-background (POST /upload #1)\n"
            "waiting in asyncpg/connect_utils.py:1012 while postgres had: "
            "timeout downstream timeout=0"
        ),
        end=3.0,
        scenario="db_blackhole",
        requests=(RequestSpan("POST /upload #1", 0.0, 0.02, 0.025, 200),),
        tasks=(
            TaskSpan(
                "send-receipt",
                "ran send_receipt() for POST /upload #1, created at app.py:60 in upload()",
                0.021,
                0.35,
                "completed",
                request="POST /upload #1",
            ),
            TaskSpan(
                "upload-background",
                "ran process_upload() for POST /upload #1, created at app.py:57 in upload()",
                0.02,
                None,
                "pending",
                request="POST /upload #1",
                chain=CHAIN,
            ),
        ),
        faults=(FaultSpan("postgres", "timeout downstream timeout=0", 0.0, None),),
        stalls=(StallSpan(1.2, 0.3, "app.py:42: `time.sleep(0.3)`"),),
        marks=(Mark(3.0, "settle deadline (3 s)"),),
    )


# --- a small DOM, built with html.parser ---

_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def find_all(self, tag: str | None = None, *classes: str, **data: str) -> list[Node]:
        """Elements by tag, classes and data-* attributes (``data_state="pending"``)."""
        wanted = {"data-" + key.replace("_", "-"): value for key, value in data.items()}
        return [
            node
            for node in self.iter()
            if (tag is None or node.tag == tag)
            and set(classes) <= node.classes
            and all(node.attrs.get(key) == value for key, value in wanted.items())
        ]

    def one(self, tag: str | None = None, *classes: str, **data: str) -> Node:
        found = self.find_all(tag, *classes, **data)
        assert len(found) == 1, f"expected one <{tag} {classes} {data}>, found {len(found)}"
        return found[0]

    def title(self) -> str:
        """The text of the element's own ``<title>`` child: the browser's tooltip."""
        titles = [c for c in self.children if isinstance(c, Node) and c.tag == "title"]
        assert titles, f"<{self.tag} {self.attrs}> has no <title>"
        return titles[0].text()

    def rects(self) -> list[tuple[float, float, str]]:
        """(left, right, fill) of the element's rectangles."""
        return [
            (float(r.attrs["x"]), float(r.attrs["x"]) + float(r.attrs["width"]), r.attrs["fill"])
            for r in self.find_all("rect")
        ]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {key: value or "" for key, value in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {key: value or "" for key, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(document: str) -> Node:
    builder = _Builder()
    builder.feed(document)
    builder.close()
    assert len(builder.stack) == 1, f"unclosed: {[node.tag for node in builder.stack]}"
    return builder.root


def ticks(doc: Node) -> list[tuple[float, float]]:
    """(seconds, x) of the scale above the lanes."""
    return [
        (float(node.attrs["data-at"]), float(node.attrs["x"]))
        for node in doc.find_all("text", "tick-label")
        if "bottom" not in node.classes
    ]


def x_of(doc: Node, seconds: float) -> float:
    """Where the picture's own scale puts a time."""
    (t0, x0), (t1, x1) = ticks(doc)[0], ticks(doc)[-1]
    return x0 + (seconds - t0) * (x1 - x0) / (t1 - t0)


# --- the tests ---


def test_document_is_well_formed_with_title_scenario_and_summary() -> None:
    document = render_timeline(hang_timeline())
    assert document.startswith("<!DOCTYPE html>")
    doc = parse(document)
    assert doc.one("h1").text() == "tests/test_app.py::test_upload[db_blackhole]"
    assert "db_blackhole" in doc.one("p", "scenario").text()
    summary = doc.one("div", "summary").text()
    assert summary.startswith("1 background task still pending after 3 s")
    assert "timeout downstream timeout=0" in summary
    (svg,) = doc.find_all("svg")
    assert [g.attrs["data-group"] for g in svg.find_all("g", "group")] == [
        "faults",
        "loop stalls",
        "requests",
        "tasks",
    ]


def test_scenario_line_only_when_there_is_one() -> None:
    doc = parse(render_timeline(Timeline(title="t", summary="s", end=1.0)))
    assert doc.find_all("p", "scenario") == []


def test_task_bars_carry_state_classes_colours_and_tooltips() -> None:
    doc = parse(render_timeline(hang_timeline()))
    pending = doc.one("g", "bar", "task", "pending", lane="task", label="upload-background")
    assert pending.attrs["data-state"] == "pending"
    assert pending.attrs["data-request"] == "POST /upload #1"
    assert [fill for _, _, fill in pending.rects()] == [PENDING]
    tooltip = pending.title()
    assert "upload-background" in tooltip
    assert "state: pending" in tooltip
    assert "start: 0.02 s" in tooltip
    assert "end: still running" in tooltip
    assert "created at app.py:57" in tooltip

    done = doc.one("g", "bar", "task", "completed", label="send-receipt")
    assert done.attrs["data-state"] == "completed"
    assert [fill for _, _, fill in done.rects()] == [STATE_COLOURS["completed"]]
    assert "end: 0.35 s" in done.title()
    assert "duration: 0.33 s" in done.title()
    # Both tasks have a lane with their name; the pending one is emphasised.
    labels = {node.text(): node for node in doc.find_all("text", "lane-label", lane="task")}
    assert set(labels) == {"send-receipt", "upload-background"}
    assert "strong" in labels["upload-background"].classes
    assert "strong" not in labels["send-receipt"].classes


def test_every_state_has_its_own_colour() -> None:
    states = ("completed", "failed", "cancelled", "pending", "lost")
    tasks = tuple(
        TaskSpan(state, "", 0.1, None if state == "pending" else 0.5, state, error="E: x")
        for state in states
    )
    doc = parse(render_timeline(Timeline(title="t", summary="s", end=1.0, tasks=tasks)))
    fills = {state: doc.one("g", "bar", "task", state=state).rects()[0][2] for state in states}
    assert fills == {state: STATE_COLOURS[state] for state in states}
    assert len(set(fills.values()) | {FAULT, STALL, ANSWERING, BACKGROUND}) == len(states) + 4
    assert "error: E: x" in doc.one("g", "bar", "task", state="failed").title()


def test_pending_bar_reaches_the_end_with_an_open_end() -> None:
    doc = parse(render_timeline(hang_timeline()))
    pending = doc.one("g", "bar", "task", "pending")
    ((left, right, _),) = pending.rects()
    assert left == pytest.approx(x_of(doc, 0.02), abs=0.1)
    assert right == pytest.approx(x_of(doc, 3.0), abs=0.1)
    assert pending.attrs["data-end"] == "3.000"
    assert pending.attrs["data-open"] == "true"
    assert len(pending.find_all("polygon", "open-end")) == 1

    done = doc.one("g", "bar", "task", "completed")
    ((_, done_right, _),) = done.rects()
    assert done_right == pytest.approx(x_of(doc, 0.35), abs=0.1)
    assert "data-open" not in done.attrs
    assert done.find_all("polygon") == []


def test_request_bar_shows_the_response_point() -> None:
    timeline = Timeline(
        title="t",
        summary="s",
        end=3.0,
        requests=(RequestSpan("POST /upload #1", 0.5, 1.0, 2.0, 201),),
    )
    doc = parse(render_timeline(timeline))
    request = doc.one("g", "bar", "request", lane="request", label="POST /upload #1")
    assert request.attrs["data-status"] == "201"
    assert request.attrs["data-response-at"] == "1.000"
    (answering, background) = request.rects()
    assert answering[2] == ANSWERING
    assert background[2] == BACKGROUND
    assert answering[0] == pytest.approx(x_of(doc, 0.5), abs=0.1)
    assert answering[1] == pytest.approx(x_of(doc, 1.0), abs=0.1)
    assert background[0] == pytest.approx(x_of(doc, 1.0), abs=0.1)
    assert background[1] == pytest.approx(x_of(doc, 2.0), abs=0.1)
    point = doc.one("line", "response-point")
    assert float(point.attrs["x1"]) == pytest.approx(x_of(doc, 1.0), abs=0.1)
    tooltip = request.title()
    assert "status: 201" in tooltip
    assert "response complete: 1.00 s" in tooltip
    assert "returned: 2.00 s" in tooltip
    assert "201 \u00b7 answered at 1.00 s \u00b7 returned at 2.00 s" in request.text()


def test_request_never_answered_is_one_open_bar() -> None:
    timeline = Timeline(
        title="t",
        summary="s",
        end=2.0,
        requests=(RequestSpan("GET /slow #1", 0.5, None, None, None),),
    )
    doc = parse(render_timeline(timeline))
    request = doc.one("g", "bar", "request", "running")
    ((left, right, fill),) = request.rects()
    assert fill == ANSWERING
    assert [left, right] == pytest.approx([x_of(doc, 0.5), x_of(doc, 2.0)], abs=0.1)
    assert request.find_all("polygon", "open-end")
    assert "response: never complete" in request.title()
    assert doc.find_all("line", "response-point") == []


def test_fault_bars_in_one_lane_per_proxy() -> None:
    timeline = Timeline(
        title="t",
        summary="s",
        end=10.0,
        faults=(
            FaultSpan("postgres", "latency latency=500", 1.0, 4.0),
            FaultSpan("smtp", "reset_peer", 2.0, None),
            FaultSpan("postgres", "timeout downstream timeout=0", 6.0, 8.0),
        ),
    )
    doc = parse(render_timeline(timeline))
    lanes = [node.text() for node in doc.find_all("text", "lane-label", lane="fault")]
    assert lanes == ["postgres", "smtp"]
    postgres = doc.find_all("g", "bar", "fault", proxy="postgres")
    assert [bar.attrs["data-label"] for bar in postgres] == [
        "latency latency=500",
        "timeout downstream timeout=0",
    ]
    (timeout,) = [bar for bar in postgres if bar.attrs["data-label"].startswith("timeout")]
    ((left, right, fill),) = timeout.rects()
    assert fill == FAULT
    assert left == pytest.approx(x_of(doc, 6.0), abs=0.1)
    assert right == pytest.approx(x_of(doc, 8.0), abs=0.1)
    assert timeout.title() == "postgres: timeout downstream timeout=0\nfrom 6.00 s to 8.00 s"
    # Both postgres bars are on one lane: the same y.
    assert len({float(bar.find_all("rect")[0].attrs["y"]) for bar in postgres}) == 1
    smtp = doc.one("g", "bar", "fault", proxy="smtp")
    assert smtp.rects()[0][1] == pytest.approx(x_of(doc, 10.0), abs=0.1)
    assert smtp.find_all("polygon", "open-end")
    assert "to still active" in smtp.title()


def test_protocol_events_in_a_lane_per_connection_and_a_table() -> None:
    timeline = Timeline(
        title="t",
        summary="s",
        end=10.0,
        protocol=(
            ProtocolMark("postgres", 2, 1.0, "startup: user app, database app"),
            ProtocolMark("postgres", 2, 1.5, "statement: INSERT INTO uploads <x>", False, 99, 3.5),
            ProtocolMark(
                "postgres", 2, 3.6, "injected FATAL 57P01 (admin_shutdown) for statement 100", True
            ),
            ProtocolMark("smtp", 1, 5.0, "RCPT TO:<ops@example.com>"),
        ),
    )
    document = render_timeline(timeline)
    doc = parse(document)
    lanes = [node.text() for node in doc.find_all("text", "lane-label", lane="protocol")]
    assert lanes == ["postgres connection 2", "smtp connection 1"]
    run = doc.one("g", "bar", "protocol", label="statement: INSERT INTO uploads <x> (\u00d799)")
    ((left, right, fill),) = run.rects()
    assert fill == PROTOCOL
    assert left == pytest.approx(x_of(doc, 1.5), abs=0.1)
    assert right == pytest.approx(x_of(doc, 3.5), abs=0.1)
    (injected,) = doc.find_all("g", "bar", "protocol", "injected")
    assert injected.rects()[0][2] == FAULT
    assert "57P01" in injected.title()
    rows = doc.one("table", "protocol").find_all("tr", "protocol")
    assert [row.find_all("td")[1].text() for row in rows] == ["2", "2", "2", "1"]
    assert "&lt;x&gt;" in document  # what the app sent is text, never markup
    assert "injected" in rows[2].classes


def test_loop_stalls() -> None:
    timeline = Timeline(
        title="t",
        summary="s",
        end=3.0,
        stalls=(
            StallSpan(1.2, 0.3, "app.py:42: `time.sleep(0.3)`"),
            StallSpan(2.0, 0.05, "app.py:50: `hashlib.scrypt(...)`"),
        ),
    )
    doc = parse(render_timeline(timeline))
    stalls = doc.find_all("g", "bar", "stall", lane="stall")
    assert len(stalls) == 2
    ((left, right, fill),) = stalls[0].rects()
    assert fill == STALL
    assert [left, right] == pytest.approx([x_of(doc, 1.2), x_of(doc, 1.5)], abs=0.1)
    assert stalls[0].attrs["data-duration"] == "0.300"
    assert stalls[0].title() == (
        "event loop blocked for 0.30 s, from 1.20 s to 1.50 s\napp.py:42: `time.sleep(0.3)`"
    )
    assert "`hashlib.scrypt(...)`" in stalls[1].text()


def test_marks_cross_all_lanes_and_their_labels_do_not_overlap() -> None:
    timeline = Timeline(
        title="t",
        summary="s",
        end=3.0,
        tasks=(TaskSpan("a", "", 0.0, None, "pending"),),
        faults=(FaultSpan("postgres", "timeout", 0.0, None),),
        marks=(Mark(3.0, "settle deadline (3 s)"), Mark(2.9, "restart"), Mark(1.0, "lifespan up")),
    )
    doc = parse(render_timeline(timeline))
    marks = {node.attrs["data-label"]: node for node in doc.find_all("g", "mark")}
    assert set(marks) == {"settle deadline (3 s)", "restart", "lifespan up"}
    deadline = marks["settle deadline (3 s)"]
    (line,) = deadline.find_all("line")
    assert line.attrs["stroke-dasharray"]
    assert float(line.attrs["x1"]) == pytest.approx(x_of(doc, 3.0), abs=0.1)
    assert deadline.title() == "settle deadline (3 s) at 3.00 s"
    # The line spans the lanes: from above the first bar to below the last one.
    bars = [
        float(rect.attrs["y"]) for bar in doc.find_all("g", "bar") for rect in bar.find_all("rect")
    ]
    assert float(line.attrs["y1"]) < min(bars)
    assert float(line.attrs["y2"]) > max(bars)
    # Close marks get different rows for their labels.
    row = {label: node.one("text", "mark-label").attrs["y"] for label, node in marks.items()}
    assert row["settle deadline (3 s)"] != row["restart"]


def test_task_table_and_await_chains() -> None:
    doc = parse(render_timeline(hang_timeline()))
    table = doc.one("table", "tasks")
    rows = {
        row.attrs["data-label"]: [cell.text() for cell in row.find_all("td")]
        for row in table.find_all("tr", "task")
    }
    assert rows["upload-background"][:5] == [
        "upload-background",
        "pending",
        "0.02 s",
        "still pending",
        "2.98 s so far",
    ]
    assert rows["send-receipt"][:5] == ["send-receipt", "completed", "0.02 s", "0.35 s", "0.33 s"]
    assert "created at app.py:57" in rows["upload-background"][7]
    (details,) = doc.find_all("details", "chain")
    assert "open" in details.attrs
    assert details.attrs["data-label"] == "upload-background"
    assert details.one("pre").text() == CHAIN


def test_user_text_is_inert() -> None:
    hostile = '<script>alert(1)</script>" onmouseover="alert(2)" \' &amp; </pre></svg><b>'
    timeline = Timeline(
        title=hostile,
        summary=hostile,
        end=2.0,
        scenario=hostile,
        requests=(RequestSpan(hostile, 0.0, 0.1, 0.2, 200),),
        tasks=(
            TaskSpan(hostile, hostile, 0.0, None, "pending", request=hostile, chain=hostile),
            TaskSpan("t2", hostile, 0.0, 1.0, hostile, error=hostile),
        ),
        faults=(FaultSpan(hostile, hostile, 0.0, None),),
        stalls=(StallSpan(0.5, 0.1, hostile),),
        marks=(Mark(1.0, hostile),),
    )
    document = render_timeline(timeline)
    assert "<script" not in document.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document
    assert document.count("</svg>") == 1
    assert document.count("</pre>") == 1
    doc = parse(document)
    assert not doc.find_all("script")
    assert not [n for n in doc.iter() if any(name.startswith("on") for name in n.attrs)]
    assert not [n for n in doc.iter() if n.tag == "b" and n.text() == ""]
    # The text comes back exactly as it was given, as data.
    assert doc.one("h1").text() == hostile
    assert doc.one("div", "summary").text() == hostile
    assert doc.one("pre").text() == hostile
    pending = doc.one("g", "bar", "task", "pending")
    assert pending.attrs["data-label"] == hostile
    assert pending.attrs["data-request"] == hostile
    assert hostile in pending.title()
    assert doc.one("g", "bar", "fault").attrs["data-proxy"] == hostile
    assert doc.one("g", "bar", "request").attrs["data-label"] == hostile
    assert doc.one("g", "mark").attrs["data-label"] == hostile
    assert doc.one("g", "bar", "stall").attrs["data-label"] == hostile
    # An odd state is data too: one harmless class, its text verbatim in the table.
    odd = doc.one("g", "bar", "task", label="t2")
    assert odd.attrs["data-state"] == hostile
    assert all(re.fullmatch(r"[a-z0-9_-]+", name) for name in odd.classes)


def test_no_external_reference() -> None:
    document = render_timeline(hang_timeline())
    assert "http://" not in document
    assert "https://" not in document
    assert not re.search(
        r"""(?:src|href|action|xlink:href)\s*=\s*["']?\s*(?:[a-z]+:)?//""", document
    )
    assert not re.search(r"""url\(\s*["']?\s*(?:[a-z]+:)?//""", document)
    assert not re.search(r"<(?:script|link|img|iframe|object|embed|image|use)\b", document)
    assert "@import" not in document
    assert "@font-face" not in document


def test_same_input_same_bytes() -> None:
    first = render_timeline(hang_timeline())
    time.sleep(0.01)
    assert render_timeline(hang_timeline()) == first
    # And in fresh interpreters with other hash seeds: no set or dict order leaks in.
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from test_timeline import hang_timeline; "
        "from pytest_asyncfaults._timeline import render_timeline; "
        "sys.stdout.buffer.write(render_timeline(hang_timeline()).encode())"
    )
    for seed in ("1", "2"):
        output = subprocess.run(
            [sys.executable, "-c", script, str(Path(__file__).parent)],
            capture_output=True,
            check=True,
            timeout=60,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        assert output.decode() == first


def test_hundreds_of_tasks_stay_fast_small_and_readable() -> None:
    tasks = tuple(
        TaskSpan(
            f"worker-{index}",
            f"ran job({index}) for GET /items #{index}, created at app.py:{index} in items()",
            index * 0.01,
            None if index % 10 == 0 else index * 0.01 + 0.5,
            "pending" if index % 10 == 0 else "completed",
            chain=CHAIN if index % 10 == 0 else "",
        )
        for index in range(500)
    )
    timeline = Timeline(title="t", summary="50 pending", end=6.0, tasks=tasks)
    started = time.perf_counter()
    document = render_timeline(timeline)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5
    assert len(document.encode()) < 2_000_000
    doc = parse(document)
    bars = doc.find_all("g", "bar", "task")
    assert len(bars) == 500
    assert len(doc.find_all("g", "bar", "task", "pending")) == 50
    tops = [float(bar.find_all("rect")[0].attrs["y"]) for bar in bars]
    assert min(b - a for a, b in itertools.pairwise(tops)) >= 18  # lanes keep their height
    (svg,) = doc.find_all("svg")
    assert float(svg.attrs["height"]) >= 500 * 18
    assert doc.find_all("text", "tick-label", "bottom")  # a long picture has its scale below too
    assert len(doc.find_all("details", "chain")) == 50


@pytest.mark.parametrize(
    ("end", "expected"),
    [
        (0.3, [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]),
        (3.0, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]),
        (45.0, [float(seconds) for seconds in range(0, 46, 5)]),
        (600.0, [float(seconds) for seconds in range(0, 601, 100)]),
        (7.3, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]),
    ],
)
def test_axis_ticks_are_round_numbers(end: float, expected: list[float]) -> None:
    doc = parse(render_timeline(Timeline(title="t", summary="s", end=end)))
    found = ticks(doc)
    assert [seconds for seconds, _ in found] == pytest.approx(expected)
    xs = [x for _, x in found]
    gaps = [b - a for a, b in itertools.pairwise(xs)]
    assert max(gaps) - min(gaps) < 0.2  # evenly spaced
    labels = [node.text() for node in doc.find_all("text", "tick-label")]
    assert labels[0].endswith(" s")
    if end == 0.3:
        assert labels[:2] == ["0.00 s", "0.05 s"]
    if end == 600.0:
        assert labels[-1] == "600 s"


def test_degenerate_inputs_render() -> None:
    # Nothing at all.
    doc = parse(render_timeline(Timeline(title="t", summary="s", end=0.0)))
    assert doc.one("text", "empty").text() == "no task recorded"
    assert doc.one("p", "empty").text() == "No task was recorded."
    assert doc.find_all("g", "bar") == []

    # Zero durations, end == 0, spans before the origin and after the end.
    timeline = Timeline(
        title="t",
        summary="s",
        end=0.0,
        tasks=(
            TaskSpan("instant", "", 0.0, 0.0, "completed"),
            TaskSpan("hung", "", 0.0, None, "pending"),
            TaskSpan("late", "", 5.0, 6.0, "completed"),
            TaskSpan("early", "", -1.0, 0.0, "cancelled"),
        ),
        stalls=(StallSpan(0.0, 0.0, "x.py:1"),),
        marks=(Mark(0.0, "deadline"),),
    )
    doc = parse(render_timeline(timeline))
    (svg,) = doc.find_all("svg")
    width = float(svg.attrs["width"])
    for bar in doc.find_all("g", "bar"):
        for left, right, _ in bar.rects():
            assert 0 <= left < right <= width
            assert right - left >= 2  # a zero-duration span is still visible
    origin = x_of(doc, 0.0)
    assert doc.one("g", "bar", label="early").rects()[0][0] == pytest.approx(origin)
    assert doc.one("g", "bar", label="late").rects()[0][0] <= width

    timeline = Timeline(
        title="t", summary="s", end=1.0, tasks=(TaskSpan("late", "", 5, 6, "lost"),)
    )
    doc = parse(render_timeline(timeline))
    ((left, right, _),) = doc.one("g", "bar", label="late").rects()
    assert left == pytest.approx(x_of(doc, 1.0), abs=0.1)  # clipped to the end of the picture
    assert "start: 5.00 s" in doc.one("g", "bar", label="late").title()  # the truth in the tooltip


def test_every_bar_has_a_tooltip() -> None:
    doc = parse(render_timeline(hang_timeline()))
    bars = doc.find_all("g", "bar")
    assert len(bars) == 5  # a fault, a stall, a request, two tasks
    assert {bar.attrs["data-lane"] for bar in bars} == {"fault", "stall", "request", "task"}
    for bar in bars:
        assert bar.title().strip()
        assert bar.attrs["data-label"]


def test_write_timeline_creates_the_directories(tmp_path: Path) -> None:
    timeline = Timeline(title="données ✓", summary="s", end=1.0)
    path = write_timeline(timeline, tmp_path / "a" / "b" / "timeline.html")
    assert path == tmp_path / "a" / "b" / "timeline.html"
    assert path.read_bytes().decode("utf-8") == render_timeline(timeline)
    assert '<meta charset="utf-8">' in path.read_text(encoding="utf-8")
