"""The timeline of a failed test as one self-contained HTML file.

A hang is easier to see than to read: the request that answered at once, the
task it left behind still pending at the deadline, the fault that was active
on the proxy all along, the loop stall in the middle. This module turns what
the harness recorded into that picture, on one time axis: an inline SVG drawn
here, so the file shows without JavaScript, without network, years later, and
a table of the tasks below it, so every text is also there to search and copy.

It is pure on purpose (no asyncio, no pytest, no clock): the same input gives
byte for byte the same file, and the renderer is tested without running an
app. Every text comes from user code (task names, chains, routes), so all of
it is escaped.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, final

from ._address import mask_secrets

__all__ = [
    "FaultSpan",
    "Mark",
    "ProtocolMark",
    "RequestSpan",
    "StallSpan",
    "TaskSpan",
    "Timeline",
    "render_timeline",
    "write_timeline",
]


@final
@dataclass(frozen=True)
class RequestSpan:
    """One request served by the app; times are seconds since the timeline's origin."""

    label: str
    start: float
    response_at: float | None
    """The client had its whole answer; what runs after it is the background phase."""
    end: float | None
    """The ASGI call returned; None: still running when the picture stops."""
    status: int | None


@final
@dataclass(frozen=True)
class TaskSpan:
    """The life of one asyncio task."""

    label: str
    detail: str
    start: float
    end: float | None
    """None: still pending when the picture stops (a hang)."""
    state: str
    """"completed", "failed", "cancelled", "pending" or "lost"."""
    error: str = ""
    request: str | None = None
    """The label of the RequestSpan it belongs to, if any."""
    chain: str = ""
    """For a pending task: its await chain, shown in full under the picture."""


@final
@dataclass(frozen=True)
class FaultSpan:
    """A fault active on one proxy."""

    proxy: str
    label: str
    start: float
    end: float | None
    """None: still active when the picture stops."""


@final
@dataclass(frozen=True)
class StallSpan:
    """The event loop was blocked for ``duration`` seconds, by the code at ``site``."""

    start: float
    duration: float
    site: str


@final
@dataclass(frozen=True)
class Mark:
    """A moment worth a line across all lanes (a deadline, a restart)."""

    at: float
    label: str


@final
@dataclass(frozen=True)
class ProtocolMark:
    """What a protocol toxic saw or did on one connection of a proxy (a statement, an SMTP
    command, the answer it gave, a cut); a run of alike ones spans ``at`` to ``until``."""

    proxy: str
    connection: int
    at: float
    text: str
    injected: bool = False
    repeats: int = 1
    until: float | None = None


@final
@dataclass(frozen=True)
class Timeline:
    """Everything the picture shows; ``end`` is where it stops (when the report was made)."""

    title: str
    summary: str
    end: float
    requests: tuple[RequestSpan, ...] = ()
    tasks: tuple[TaskSpan, ...] = ()
    faults: tuple[FaultSpan, ...] = ()
    stalls: tuple[StallSpan, ...] = ()
    marks: tuple[Mark, ...] = ()
    scenario: str = ""
    protocol: tuple[ProtocolMark, ...] = ()


# The colours of the picture. A pending task is what a hang report is about, so
# it gets the strongest colour; the fault is the cause, so the second most visible.
PENDING: Final = "#d7191c"
FAULT: Final = "#e8a317"
STATE_COLOURS: Final[dict[str, str]] = {
    "completed": "#5aa454",
    "failed": "#f07c1d",
    "cancelled": "#a3a8ae",
    "pending": PENDING,
    "lost": "#8e5fc4",
}
UNKNOWN_STATE: Final = "#6c7a89"
STALL: Final = "#7a4f35"
ANSWERING: Final = "#2f6db5"
"""A request until the client has its answer."""
BACKGROUND: Final = "#9cc3ea"
"""A request after its answer: the background phase, where hangs hide."""
PROTOCOL: Final = "#6c7a89"
"""What a protocol toxic read on a connection (the fault's own doings are in FAULT)."""
PROTOCOL_LANES: Final = 12
"""Connections drawn in the picture (those where a toxic acted first); the table has all."""
PROTOCOL_ROWS: Final = 300
_LIGHT_FILLS: Final = frozenset({FAULT, BACKGROUND, STATE_COLOURS["cancelled"]})
"""Fills too light for white text on them."""

_WIDTH: Final = 1240
_PLOT_LEFT: Final = 250
_PLOT_RIGHT: Final = _WIDTH - 40  # room for the arrow of an open end
_LANE: Final = 22
_BAR: Final = 14
_GROUP: Final = 24
_MARK_ROW: Final = 15
_CHAR: Final = 6.6
"""A generous width of one character at 11 px, to decide where a text fits."""
_LABEL_CHARS: Final = 34


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _token(state: str) -> str:
    """A state as one CSS class name, whatever the caller passed."""
    return re.sub(r"[^a-z0-9_-]+", "-", state.lower()) or "unknown"


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def _f(value: float) -> str:
    return f"{value:.1f}"


def _clip(text: str, chars: int) -> str:
    text = " ".join(text.split())
    if chars < 2:
        return ""
    return text if len(text) <= chars else text[: chars - 1] + "\u2026"


def _tick_step(span: float) -> float:
    """1, 2 or 5 times a power of ten, for at most 11 ticks."""
    raw = span / 10
    exponent = math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        step: float = multiple * 10.0**exponent
        if step >= raw * (1 - 1e-9):
            return step
    raise AssertionError("unreachable")  # pragma: no cover


def _ticks(span: float) -> tuple[list[float], int]:
    step = _tick_step(span)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    count = math.floor(span / step + 1e-9)
    return [round(index * step, decimals) for index in range(count + 1)], decimals


@dataclass(frozen=True)
class _Scale:
    span: float

    def x(self, seconds: float) -> float:
        seconds = min(max(seconds, 0.0), self.span)
        return _PLOT_LEFT + seconds / self.span * (_PLOT_RIGHT - _PLOT_LEFT)


class _Svg:
    """The SVG being drawn, lane after lane, top to bottom."""

    def __init__(self, scale: _Scale, end: float) -> None:
        self.scale = scale
        self.end = end
        self.stripes: list[str] = []
        self.parts: list[str] = []
        self.y = 0.0
        self.lane_index = 0

    def group(self, name: str) -> None:
        self.y += 6
        self.parts.append(
            f'<g class="group" data-group="{_e(name)}">'
            f'<line x1="8" x2="{_WIDTH - 8}" y1="{_f(self.y)}" y2="{_f(self.y)}" '
            f'stroke="#c5cad3"/>'
            f'<text class="group-label" x="10" y="{_f(self.y + 16)}">{_e(name)}</text></g>'
        )
        self.y += _GROUP - 6
        self.lane_index = 0

    def lane(self, kind: str, name: str, *, strong: bool = False) -> float:
        """Opens a lane and returns the top of its bar."""
        top = self.y
        if self.lane_index % 2:
            self.stripes.append(
                f'<rect x="{_PLOT_LEFT}" y="{_f(top)}" width="{_PLOT_RIGHT - _PLOT_LEFT}" '
                f'height="{_LANE}" fill="#f3f5f8"/>'
            )
        label_class = "lane-label strong" if strong else "lane-label"
        clipped = _clip(name, _LABEL_CHARS)
        title = f"<title>{_e(name)}</title>" if clipped != " ".join(name.split()) else ""
        self.parts.append(
            f'<text class="{label_class}" data-lane="{kind}" x="{_PLOT_LEFT - 8}" '
            f'y="{_f(top + _LANE / 2 + 4)}" text-anchor="end">{title}{_e(clipped)}</text>'
        )
        self.y += _LANE
        self.lane_index += 1
        return top + (_LANE - _BAR) / 2

    def bar(
        self,
        *,
        classes: str,
        attrs: dict[str, str],
        tooltip: str,
        top: float,
        segments: Iterable[tuple[float, float | None, str]],
        text: str,
    ) -> None:
        """One bar: its segments (start, end or None for open, fill), a tooltip and a caption.

        An open end is drawn to the end of the picture with an arrow, so
        "still running" cannot be mistaken for "ended there".
        """
        body: list[str] = [f"<title>{_e(tooltip)}</title>"]
        drawn: list[tuple[float, float, str]] = []
        opened = False
        for start, end, fill in segments:
            x0 = self.scale.x(start)
            x1 = self.scale.x(self.end if end is None else max(end, start))
            width = max(x1 - x0, 2.0)
            body.append(
                f'<rect x="{_f(x0)}" y="{_f(top)}" width="{_f(width)}" height="{_BAR}" '
                f'fill="{fill}"/>'
            )
            drawn.append((x0, x0 + width, fill))
            opened = end is None
        if not drawn:
            return
        left, right = drawn[0][0], max(x1 for _, x1, _ in drawn)
        if opened:
            body.append(
                f'<polygon class="open-end" points="{_f(right)},{_f(top - 2)} '
                f'{_f(right + 9)},{_f(top + _BAR / 2)} {_f(right)},{_f(top + _BAR + 2)}" '
                f'fill="{drawn[-1][2]}"/>'
            )
            right += 10
        body.append(self._caption(drawn, left, right, top, text))
        attributes = "".join(f' data-{key}="{_e(value)}"' for key, value in attrs.items())
        self.parts.append(f'<g class="{classes}"{attributes}>{"".join(body)}</g>')

    def _caption(
        self,
        drawn: list[tuple[float, float, str]],
        left: float,
        right: float,
        top: float,
        text: str,
    ) -> str:
        """Inside a one-colour bar when it fits, else beside it where there is room."""
        baseline = _f(top + _BAR - 3)
        inside = right - left - 8
        after = _WIDTH - 4 - right - 6
        before = left - _PLOT_LEFT - 6
        needed = len(text) * _CHAR
        one_colour = len(drawn) == 1
        if (one_colour and needed <= inside) or (
            max(after, before) < needed and inside > max(after, before, 40)
        ):
            fill = max(drawn, key=lambda segment: segment[1] - segment[0])[2]
            colour = "#1d232b" if fill in _LIGHT_FILLS else "#ffffff"
            return (
                f'<text class="caption" x="{_f(left + 4)}" y="{baseline}" '
                f'fill="{colour}">{_e(_clip(text, int(inside / _CHAR)))}</text>'
            )
        if after >= needed or after >= before:
            return (
                f'<text class="caption outside" x="{_f(right + 5)}" y="{baseline}">'
                f"{_e(_clip(text, int(after / _CHAR)))}</text>"
            )
        return (
            f'<text class="caption outside" x="{_f(left - 5)}" y="{baseline}" '
            f'text-anchor="end">{_e(_clip(text, int(before / _CHAR)))}</text>'
        )


def _task_caption(task: TaskSpan, end: float) -> str:
    if task.end is None:
        return f"{task.state} for {_s(end - task.start)}, still running at {_s(end)}"
    if task.error:
        return f"{task.state}: {task.error}"
    return f"{task.state} after {_s(task.end - task.start)}"


def _task_tooltip(task: TaskSpan) -> str:
    lines = [task.label, f"state: {task.state}", f"start: {_s(task.start)}"]
    lines.append("end: still running" if task.end is None else f"end: {_s(task.end)}")
    if task.end is not None:
        lines.append(f"duration: {_s(task.end - task.start)}")
    if task.error:
        lines.append(f"error: {task.error}")
    if task.request is not None:
        lines.append(f"request: {task.request}")
    if task.detail:
        lines.append(task.detail)
    return "\n".join(lines)


def _request_tooltip(request: RequestSpan) -> str:
    lines = [
        request.label,
        f"status: {'none' if request.status is None else request.status}",
        f"start: {_s(request.start)}",
        "response: never complete"
        if request.response_at is None
        else f"response complete: {_s(request.response_at)}",
        "returned: still running" if request.end is None else f"returned: {_s(request.end)}",
    ]
    return "\n".join(lines)


def _request_caption(request: RequestSpan, end: float) -> str:
    status = "no status" if request.status is None else str(request.status)
    if request.response_at is None:
        answered = "no response"
    else:
        answered = f"answered at {_s(request.response_at)}"
    returned = (
        f"still running at {_s(end)}" if request.end is None else f"returned at {_s(request.end)}"
    )
    return f"{status} \u00b7 {answered} \u00b7 {returned}"


def _request_segments(request: RequestSpan) -> list[tuple[float, float | None, str]]:
    if request.response_at is None:
        return [(request.start, request.end, ANSWERING)]
    answered = max(request.response_at, request.start)
    segments: list[tuple[float, float | None, str]] = [(request.start, answered, ANSWERING)]
    if request.end is None or request.end > answered:
        segments.append((answered, request.end, BACKGROUND))
    return segments


def _mark_rows(marks: Iterable[Mark], scale: _Scale) -> list[tuple[Mark, int, bool]]:
    """Staggers mark labels on rows so close marks do not write over each other."""
    placed: list[tuple[Mark, int, bool]] = []
    row_ends: list[float] = []
    for mark in sorted(marks, key=lambda mark: (mark.at, mark.label)):
        x = scale.x(mark.at)
        width = len(mark.label) * _CHAR + 6
        anchor_end = x + width > _WIDTH - 4
        left = x - width if anchor_end else x
        row = next((i for i, used in enumerate(row_ends) if used < left), len(row_ends))
        if row == len(row_ends):
            row_ends.append(0.0)
        row_ends[row] = left + width + 8
        placed.append((mark, row, anchor_end))
    return placed


def _fault_lanes(svg: _Svg, faults: tuple[FaultSpan, ...]) -> None:
    svg.group("faults")
    for proxy in dict.fromkeys(fault.proxy for fault in faults):
        top = svg.lane("fault", proxy)
        for fault in (fault for fault in faults if fault.proxy == proxy):
            until = "still active" if fault.end is None else _s(fault.end)
            svg.bar(
                classes="bar fault",
                attrs={"lane": "fault", "proxy": proxy, "label": fault.label},
                tooltip=f"{proxy}: {fault.label}\nfrom {_s(fault.start)} to {until}",
                top=top,
                segments=[(fault.start, fault.end, FAULT)],
                text=fault.label,
            )


def _protocol_lanes(svg: _Svg, marks: tuple[ProtocolMark, ...]) -> None:
    svg.group("protocol")
    lanes: dict[tuple[str, int], list[ProtocolMark]] = {}
    for mark in marks:
        lanes.setdefault((mark.proxy, mark.connection), []).append(mark)
    acted = sorted(lanes, key=lambda lane: (not any(m.injected for m in lanes[lane]), lane))
    for proxy, connection in sorted(acted[:PROTOCOL_LANES]):
        name = f"{proxy} connection {connection}"
        top = svg.lane("protocol", name)
        for mark in lanes[(proxy, connection)]:
            end = mark.until if mark.until is not None and mark.until > mark.at else None
            text = mark.text if mark.repeats == 1 else f"{mark.text} (\u00d7{mark.repeats})"
            svg.bar(
                classes="bar protocol" + (" injected" if mark.injected else ""),
                attrs={"lane": "protocol", "proxy": proxy, "label": text},
                tooltip=f"{name} at {_s(mark.at)}: {text}",
                top=top,
                segments=[
                    (
                        mark.at,
                        end if end is not None else mark.at,
                        FAULT if mark.injected else PROTOCOL,
                    )
                ],
                text=text if mark.injected else "",
            )
    if len(acted) > PROTOCOL_LANES:
        svg.parts.append(
            f'<text class="empty" x="{_PLOT_LEFT}" y="{_f(svg.y + 14)}">'
            f"{len(acted) - PROTOCOL_LANES} more connection(s) in the table below</text>"
        )
        svg.y += _LANE


def _protocol_table(timeline: Timeline) -> str:
    if not timeline.protocol:
        return ""
    rows = []
    for mark in timeline.protocol[:PROTOCOL_ROWS]:
        times = _s(mark.at)
        if mark.repeats > 1 and mark.until is not None:
            times += f" \u2013 {_s(mark.until)}"
        text = mark.text if mark.repeats == 1 else f"{mark.text} (\u00d7{mark.repeats})"
        rows.append(
            f'<tr class="protocol{" injected" if mark.injected else ""}">'
            f'<td>{_e(mark.proxy)}</td><td class="num">{mark.connection}</td>'
            f'<td class="num">{times}</td><td>{"injected" if mark.injected else ""}</td>'
            f"<td>{_e(text)}</td></tr>"
        )
    more = len(timeline.protocol) - PROTOCOL_ROWS
    tail = f'<p class="empty">... and {more} more.</p>' if more > 0 else ""
    return (
        "<h2>Protocol events</h2>\n"
        '<table class="protocol"><thead><tr><th>proxy</th><th>connection</th><th>time</th>'
        f"<th></th><th>event</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{tail}\n"
    )


def _stall_lane(svg: _Svg, stalls: tuple[StallSpan, ...]) -> None:
    svg.group("loop stalls")
    top = svg.lane("stall", "event loop blocked")
    for stall in stalls:
        svg.bar(
            classes="bar stall",
            attrs={"lane": "stall", "label": stall.site, "duration": f"{stall.duration:.3f}"},
            tooltip=(
                f"event loop blocked for {_s(stall.duration)}, "
                f"from {_s(stall.start)} to {_s(stall.start + stall.duration)}\n{stall.site}"
            ),
            top=top,
            segments=[(stall.start, stall.start + max(stall.duration, 0.0), STALL)],
            text=f"{_s(stall.duration)} \u00b7 {stall.site}",
        )


def _request_lanes(svg: _Svg, requests: tuple[RequestSpan, ...]) -> None:
    svg.group("requests")
    for request in requests:
        top = svg.lane("request", request.label)
        attrs = {"lane": "request", "label": request.label}
        if request.status is not None:
            attrs["status"] = str(request.status)
        if request.response_at is not None:
            attrs["response-at"] = f"{request.response_at:.3f}"
        svg.bar(
            classes="bar request" + (" running" if request.end is None else ""),
            attrs=attrs,
            tooltip=_request_tooltip(request),
            top=top,
            segments=_request_segments(request),
            text=_request_caption(request, svg.end),
        )
        if request.response_at is not None:
            x = _f(svg.scale.x(request.response_at))
            svg.parts.append(
                f'<line class="response-point" data-at="{request.response_at:.3f}" '
                f'x1="{x}" x2="{x}" y1="{_f(top - 3)}" y2="{_f(top + _BAR + 3)}" '
                f'stroke="#0b2545" stroke-width="2"/>'
            )


def _task_lanes(svg: _Svg, tasks: tuple[TaskSpan, ...]) -> None:
    svg.group("tasks")
    if not tasks:
        svg.parts.append(
            f'<text class="empty" x="{_PLOT_LEFT}" y="{_f(svg.y + 14)}">no task recorded</text>'
        )
        svg.y += _LANE
    end = svg.end
    for task in tasks:
        top = svg.lane("task", task.label, strong=task.end is None or task.state == "pending")
        drawn_end = end if task.end is None else min(max(task.end, task.start), end)
        attrs = {
            "lane": "task",
            "state": task.state,
            "label": task.label,
            "start": f"{min(max(task.start, 0.0), end):.3f}",
            "end": f"{max(drawn_end, 0.0):.3f}",
        }
        if task.end is None:
            attrs["open"] = "true"
        if task.request is not None:
            attrs["request"] = task.request
        svg.bar(
            classes=f"bar task {_token(task.state)}",
            attrs=attrs,
            tooltip=_task_tooltip(task),
            top=top,
            segments=[(task.start, task.end, STATE_COLOURS.get(task.state, UNKNOWN_STATE))],
            text=_task_caption(task, end),
        )


def _svg(timeline: Timeline) -> str:
    end = max(timeline.end, 0.0)
    span = end if end > 0 else 1.0  # nothing happened: still a readable scale
    scale = _Scale(span)
    svg = _Svg(scale, end)
    marks = _mark_rows(timeline.marks, scale)
    axis_y = 8 + (max((row for _, row, _ in marks), default=-1) + 1) * _MARK_ROW + 18
    svg.y = axis_y + 4
    if timeline.faults:
        _fault_lanes(svg, timeline.faults)
    if timeline.protocol:
        _protocol_lanes(svg, timeline.protocol)
    if timeline.stalls:
        _stall_lane(svg, timeline.stalls)
    if timeline.requests:
        _request_lanes(svg, timeline.requests)
    _task_lanes(svg, timeline.tasks)

    bottom = lanes_end = svg.y + 6
    ticks, decimals = _ticks(span)
    under = [
        f'<line class="axis" x1="{_PLOT_LEFT}" x2="{_PLOT_RIGHT}" y1="{axis_y}" y2="{axis_y}" '
        f'stroke="#5d6673"/>'
    ]
    over = [f'<text class="axis-title" x="10" y="{axis_y - 6}">time since the start</text>']
    for tick in ticks:
        x = _f(scale.x(tick))
        under.append(
            f'<line class="grid" x1="{x}" x2="{x}" y1="{axis_y}" y2="{_f(lanes_end)}" '
            f'stroke="#e1e5eb"/>'
        )
        over.append(
            f'<text class="tick-label" data-at="{tick:.{decimals}f}" x="{x}" y="{axis_y - 6}" '
            f'text-anchor="middle">{tick:.{decimals}f} s</text>'
        )
    if bottom - axis_y > 640:  # a long picture gets its scale at the bottom too
        over.extend(
            f'<text class="tick-label bottom" x="{_f(scale.x(tick))}" y="{_f(bottom + 14)}" '
            f'text-anchor="middle">{tick:.{decimals}f} s</text>'
            for tick in ticks
        )
        bottom += 16
    # Marks go under the bars, so captions stay readable where a deadline crosses them;
    # tick labels over everything, with a halo, so a mark's line never strikes them out.
    for mark, row, anchor_end in marks:
        x = _f(scale.x(mark.at))
        label_x = _f(scale.x(mark.at) + (-4 if anchor_end else 4))
        anchor = ' text-anchor="end"' if anchor_end else ""
        top = 8 + row * _MARK_ROW
        under.append(
            f'<g class="mark" data-label="{_e(mark.label)}" data-at="{mark.at:.3f}">'
            f"<title>{_e(mark.label)} at {_s(mark.at)}</title>"
            f'<line x1="{x}" x2="{x}" y1="{top}" y2="{_f(lanes_end)}" '
            f'stroke="#1d232b" stroke-width="1.5" stroke-dasharray="6 4"/>'
            f'<text class="mark-label" x="{label_x}" y="{top + 11}"{anchor}>'
            f"{_e(mark.label)}</text></g>"
        )
    height = math.ceil(bottom + 8)
    return (
        f'<svg class="timeline" role="img" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}"><title>{_e(timeline.title)}</title>'
        + "".join(svg.stripes + under + svg.parts + over)
        + "</svg>"
    )


def _task_table(timeline: Timeline) -> str:
    if not timeline.tasks:
        return '<p class="empty">No task was recorded.</p>'
    rows = []
    for task in timeline.tasks:
        if task.end is None:
            end, duration = "still pending", f"{_s(timeline.end - task.start)} so far"
        else:
            end, duration = _s(task.end), _s(task.end - task.start)
        rows.append(
            f'<tr class="task {_token(task.state)}" data-label="{_e(task.label)}">'
            f"<td>{_e(task.label)}</td>"
            f'<td><span class="state {_token(task.state)}">{_e(task.state)}</span></td>'
            f'<td class="num">{_s(task.start)}</td><td class="num">{end}</td>'
            f'<td class="num">{duration}</td><td>{_e(task.request or "")}</td>'
            f"<td>{_e(task.error)}</td><td>{_e(task.detail)}</td></tr>"
        )
    return (
        '<table class="tasks"><thead><tr><th>task</th><th>state</th><th>start</th><th>end</th>'
        "<th>duration</th><th>request</th><th>error</th><th>detail</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _chains(timeline: Timeline) -> str:
    pending = [task for task in timeline.tasks if task.end is None or task.state == "pending"]
    if not pending:
        return ""
    blocks = [
        f'<details open class="chain" data-label="{_e(task.label)}"><summary>'
        f"<b>{_e(task.label)}</b> \u2014 {_e(task.state)} since {_s(task.start)}</summary>"
        f"<pre>{_e(task.chain or '(no await chain was recorded)')}</pre></details>"
        for task in pending
    ]
    return "<h2>Where the pending tasks wait</h2>" + "".join(blocks)


def _legend() -> str:
    entries = [(state, colour) for state, colour in STATE_COLOURS.items()] + [
        ("fault active (or what a protocol toxic did)", FAULT),
        ("loop stall", STALL),
        ("request until answered", ANSWERING),
        ("request after the answer", BACKGROUND),
    ]
    return (
        '<p class="legend">'
        + "".join(
            f'<span><i style="background:{colour}"></i>{_e(name)}</span>'
            for name, colour in entries
        )
        + "<span>\u25b6 still running at the end</span></p>"
    )


_CSS: Final = (
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d232b;"
    "margin:20px 24px;background:#fff}"
    "h1{font-size:19px;margin:0 0 4px;word-break:break-all}"
    "h2{font-size:16px;margin:22px 0 8px}"
    ".scenario{margin:0 0 8px;color:#46505c}"
    ".summary{border:2px solid #b3141a;background:#fdecea;color:#7a0c10;padding:10px 14px;"
    "border-radius:6px;font-size:15px;font-weight:600;white-space:pre-wrap;margin:8px 0 12px}"
    ".legend{display:flex;flex-wrap:wrap;gap:6px 16px;margin:0 0 6px;font-size:12px;"
    "color:#46505c}"
    ".legend i{display:inline-block;width:11px;height:11px;margin-right:5px;"
    "vertical-align:-1px;border-radius:2px}"
    "figure{margin:0;overflow-x:auto}"
    "svg.timeline{font:11px system-ui,-apple-system,'Segoe UI',sans-serif;display:block;"
    "max-width:100%;height:auto}"
    "svg .group-label{font-weight:700;font-size:12px;fill:#46505c;text-transform:uppercase;"
    "letter-spacing:.04em}"
    "svg .lane-label{fill:#1d232b}svg .lane-label.strong{fill:#b3141a;font-weight:700}"
    "svg .tick-label,svg .axis-title,svg .caption.outside{paint-order:stroke;stroke:#fff;"
    "stroke-width:4px;stroke-linejoin:round}"
    "svg .tick-label,svg .axis-title{fill:#5d6673}svg .caption.outside{fill:#1d232b}"
    "svg .mark-label{font-weight:700;fill:#1d232b}"
    "svg .empty{fill:#5d6673;font-style:italic}"
    "table{border-collapse:collapse;font-size:13px;width:100%}"
    "th,td{border-bottom:1px solid #e1e5eb;padding:4px 8px;text-align:left;vertical-align:top}"
    "th{background:#f3f5f8}td.num{text-align:right;white-space:nowrap}"
    "tr.pending td{background:#fdecea}tr.protocol.injected td{background:#fdf3e1}"
    ".state{padding:1px 6px;border-radius:3px;color:#fff;white-space:nowrap}"
    + "".join(
        f".state.{state}{{background:{colour}{';color:#1d232b' if colour in _LIGHT_FILLS else ''}}}"
        for state, colour in STATE_COLOURS.items()
    )
    + "details.chain{margin:6px 0}details.chain summary{cursor:pointer}"
    "pre{background:#f6f7f9;border:1px solid #e1e5eb;padding:8px 10px;overflow-x:auto;"
    "font:12px/1.4 ui-monospace,'DejaVu Sans Mono',monospace;white-space:pre}"
)


def render_timeline(timeline: Timeline) -> str:
    """The whole HTML document: header, legend, picture, task table, await chains."""
    scenario = (
        f'<p class="scenario">scenario: <b>{_e(timeline.scenario)}</b></p>'
        if timeline.scenario
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>timeline: {_e(timeline.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<h1>{_e(timeline.title)}</h1>\n{scenario}\n<div class="summary" role="alert">'
        f"{_e(timeline.summary)}</div>\n{_legend()}\n<figure>{_svg(timeline)}</figure>\n"
        f"<h2>Tasks</h2>\n{_task_table(timeline)}\n{_chains(timeline)}\n"
        f"{_protocol_table(timeline)}</body>\n</html>\n"
    )


def write_timeline(timeline: Timeline, path: Path) -> Path:
    """Writes the document, creating the directories, so the report can just print the path.

    A timeline is an artifact of CI, read by more people than may log in to the
    database: no password the process knows of, nor any URL's, is written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(mask_secrets(render_timeline(timeline)), encoding="utf-8")
    return path
