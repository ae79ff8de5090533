"""The timeline file in a real browser: headless Chromium builds its DOM and paints it.

The renderer's own tests read the HTML we wrote; this one reads what a
browser made of it, the DOM it built and the pixels it painted, so "the file
opens and shows the hang" is checked, not assumed. Chromium is a test
dependency (``scripts/setup`` installs it); without it the test fails, since
a skipped test would prove nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_timeline import hang_timeline, parse

from pytest_asyncfaults._timeline import FAULT, PENDING, write_timeline

TIMEOUT = 60.0
"""Seconds one Chromium run may take before its process group is killed."""
CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> str:
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    pytest.fail(
        f"no Chromium found (tried {', '.join(CANDIDATES)}): the timeline's browser test needs "
        "it; scripts/setup installs it (apt-get install chromium)",
        pytrace=False,
    )


@dataclass
class Run:
    """One Chromium process: its own group, profile and output files."""

    name: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    code: int | None = None

    def stop(self) -> None:
        """Waits for it (bounded), then kills what is left of its group."""
        try:
            self.code = self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.code = None
        finally:
            # Chromium's helpers can outlive the browser; the group is this run's alone.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def output(self) -> str:
        errors = self.stderr.read_text(errors="replace")[-2000:]
        assert self.code is not None, f"chromium ({self.name}) took over {TIMEOUT} s:\n{errors}"
        assert self.code == 0, f"chromium ({self.name}) exited with {self.code}:\n{errors}"
        return self.stdout.read_text(errors="replace")


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A private directory, removed afterwards (pytest's tmp_path would keep the profiles)."""
    with tempfile.TemporaryDirectory(prefix="asyncfaults-chromium-") as name:
        yield Path(name)


def start_chromium(binary: str, workdir: Path, name: str, *args: str) -> Run:
    profile = workdir / f"profile-{name}"
    stdout, stderr = workdir / f"{name}.out", workdir / f"{name}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=workdir,
            start_new_session=True,
        )
    return Run(name, process, stdout, stderr)


def render(page: Path, workdir: Path, width: int, height: int) -> tuple[str, Image]:
    """``page`` as Chromium builds it (its DOM) and paints it (a screenshot of ``width`` x
    ``height``): two browsers at once, sharing nothing but the file they read."""
    binary = find_chromium()
    screenshot = workdir / f"{page.stem}.png"
    runs = [start_chromium(binary, workdir, "dom", "--dump-dom", page.as_uri())]
    try:
        runs.append(
            start_chromium(
                binary,
                workdir,
                "shot",
                f"--screenshot={screenshot}",
                f"--window-size={width},{height}",
                page.as_uri(),
            )
        )
    finally:
        for run in runs:
            run.stop()
    dom_text, _ = (run.output() for run in runs)
    return dom_text, decode_png(screenshot.read_bytes())


# --- PNG, decoded with the standard library ---


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int
    pixels: bytes

    def row(self, y: int) -> bytes:
        stride = self.width * self.channels
        return self.pixels[y * stride : (y + 1) * stride]


def decode_png(data: bytes) -> Image:
    """8-bit RGB or RGBA, not interlaced: what Chromium writes for a screenshot."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    position, compressed, header = 8, bytearray(), None
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed += body
        elif kind == b"IEND":
            break
    assert header is not None, "no IHDR chunk"
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8, f"bit depth {depth}"
    assert colour_type in (2, 6), f"colour type {colour_type}"
    assert interlace == 0, "interlaced"
    channels = 3 if colour_type == 2 else 4
    stride = width * channels
    raw = zlib.decompress(bytes(compressed))
    assert len(raw) == height * (stride + 1), "image data of the wrong size"
    # Up, the most common filter, in one big-integer addition without carries between bytes.
    low = int.from_bytes(b"\x7f" * stride, "big")
    high = int.from_bytes(b"\x80" * stride, "big")
    pixels = bytearray()
    prior = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], raw[start + 1 : start + 1 + stride]
        if kind == 0:
            current = line
        elif kind == 2:
            a, b = int.from_bytes(line, "big"), int.from_bytes(prior, "big")
            current = (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(stride, "big")
        elif kind in (1, 3, 4):
            out = bytearray(line)
            for i in range(stride):
                left = out[i - channels] if i >= channels else 0
                up = prior[i]
                if kind == 1:
                    predicted = left
                elif kind == 3:
                    predicted = (left + up) >> 1
                else:
                    corner = prior[i - channels] if i >= channels else 0
                    pa, pb, pc = abs(up - corner), abs(left - corner), abs(left + up - 2 * corner)
                    predicted = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                out[i] = (out[i] + predicted) & 0xFF
            current = bytes(out)
        else:
            raise AssertionError(f"unknown PNG filter {kind} on row {y}")
        pixels += current
        prior = current
    return Image(width, height, channels, bytes(pixels))


def encode_png(width: int, height: int, channels: int, pixels: bytes) -> bytes:
    """A PNG using each of the five filters in turn, to check the decoder against."""
    stride = width * channels
    raw = bytearray()
    prior = bytes(stride)
    for y in range(height):
        line = pixels[y * stride : (y + 1) * stride]
        kind = y % 5
        filtered = bytearray()
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = prior[i]
            corner = prior[i - channels] if i >= channels else 0
            pa, pb, pc = abs(up - corner), abs(left - corner), abs(left + up - 2 * corner)
            paeth = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            predicted = (0, left, up, (left + up) >> 1, paeth)[kind]
            filtered.append((line[i] - predicted) & 0xFF)
        raw += bytes([kind]) + filtered
        prior = line

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    colour_type = 2 if channels == 3 else 6
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )


def rgb(colour: str) -> tuple[int, int, int]:
    value = int(colour.lstrip("#"), 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF


@dataclass(frozen=True)
class Paint:
    pixels: int
    """How many pixels have the colour."""
    longest: int
    """The longest horizontal run of it: a bar, not a legend swatch."""
    row: int
    """Where that run is: its row,"""
    right: int
    """and the x just after its last pixel."""


def paint(image: Image, colour: str, tolerance: int = 12) -> Paint:
    red, green, blue = rgb(colour)
    total = longest = where = right = 0
    step = image.channels
    for y in range(image.height):
        line = image.row(y)
        run = 0
        for x in range(image.width):
            i = x * step
            if (
                abs(line[i] - red) <= tolerance
                and abs(line[i + 1] - green) <= tolerance
                and abs(line[i + 2] - blue) <= tolerance
            ):
                total += 1
                run += 1
                if run > longest:
                    longest, where, right = run, y, x + 1
            else:
                run = 0
    return Paint(total, longest, where, right)


# --- the tests ---


@pytest.mark.parametrize("channels", [3, 4])
def test_png_decoder_reads_every_filter(channels: int) -> None:
    width, height = 37, 11
    pixels = bytes(
        (x * 7 + y * 31 + c * 101 + (x * y) % 13) & 0xFF
        for y in range(height)
        for x in range(width)
        for c in range(channels)
    )
    image = decode_png(encode_png(width, height, channels, pixels))
    assert (image.width, image.height, image.channels) == (width, height, channels)
    assert image.pixels == pixels


def test_missing_chromium_fails_and_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "CANDIDATES", ("/nonexistent/chromium", "no-such-browser-here"))
    with pytest.raises(pytest.fail.Exception, match=r"scripts/setup .*apt-get install chromium"):
        find_chromium()


def test_chromium_shows_the_hang(workdir: Path) -> None:
    page = write_timeline(hang_timeline(), workdir / "report" / "timeline.html")
    dom_text, image = render(page, workdir, 1400, 900)

    # (a) The DOM as the browser built it.
    dom = parse(dom_text)
    pending = dom.one("g", "bar", "task", "pending", label="upload-background")
    assert pending.attrs["data-state"] == "pending"
    assert pending.attrs["data-lane"] == "task"
    assert "state: pending" in pending.title()
    fault = dom.one("g", "bar", "fault", proxy="postgres")
    assert fault.attrs["data-label"] == "timeout downstream timeout=0"
    chain = dom.one("details", "chain", label="upload-background").one("pre").text()
    assert "asyncpg/connect_utils.py" in chain
    assert "settle deadline (3 s)" in dom.one("g", "mark").text()

    # (b) The pixels it painted.
    assert (image.width, image.height) == (1400, 900)
    hung, faulted = paint(image, PENDING), paint(image, FAULT)
    # The pending task and the fault run over most of the axis, not just a legend swatch,
    assert hung.longest > 600, hung
    assert faulted.longest > 600, faulted
    assert hung.pixels > 5000, hung
    assert faulted.pixels > 5000, faulted
    # both up to the end of the picture, the task's lane below the fault's.
    assert abs(hung.right - faulted.right) <= 3, (hung, faulted)
    assert hung.row > faulted.row, (hung, faulted)
