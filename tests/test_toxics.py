"""Each toxic's sans-IO stage on a fake clock: exact timings, no sockets.

Times are plain floats (seconds); attributes are Toxiproxy's integer units.
``run`` plays a stage forward by polling it at each deadline it announces,
which is exactly what the engine's driver does.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import TypeVar, cast

import pytest

from pytest_asyncfaults import TOXIC_TYPES
from pytest_asyncfaults._toxics import (
    CLOSE,
    EOF,
    RESET,
    Bandwidth,
    Data,
    Event,
    Latency,
    LimitData,
    Marker,
    Noop,
    ResetPeer,
    Slicer,
    SlowClose,
    Stage,
    Timeout,
)

S = TypeVar("S", bound=Stage)

SEED = 1


def make(cls: type[S], now: float = 0.0, *, seed: int = SEED, **attributes: int) -> S:
    """A stage of ``cls`` that joined a stream at ``now``."""
    stage = cls(attributes, random.Random(seed))
    stage.start(now)
    return stage


def run(stage: Stage, until: float = 1e9) -> list[tuple[float, Event]]:
    """Poll ``stage`` at each deadline up to ``until``: what leaves, and when."""
    out: list[tuple[float, Event]] = []
    while (when := stage.deadline()) is not None and when <= until:
        events = stage.poll(when)
        assert events, f"deadline {when} announced with nothing due"
        out.extend((when, event) for event in events)
    return out


def at(when: float) -> float:
    """A time that compares equal whatever its float rounding."""
    return cast(float, pytest.approx(when))


def approx_data(data: bytes, stamp: float) -> Data:
    """A ``Data`` that compares equal whatever the float rounding of its stamp."""
    return Data(data, at(stamp))


def payload(events: Sequence[Event]) -> bytes:
    return b"".join(event.data for event in events if isinstance(event, Data))


# -- latency --------------------------------------------------------------------


def test_latency_releases_a_chunk_latency_ms_after_its_stamp() -> None:
    stage = make(Latency, 1.0, latency=50)
    stage.feed(Data(b"abc", 1.0), 1.0)
    assert stage.deadline() == pytest.approx(1.05)
    assert stage.poll(1.049) == []
    assert stage.poll(1.05) == [approx_data(b"abc", 1.05)]
    assert stage.deadline() is None


def test_latency_counts_from_the_stamp_not_from_arrival() -> None:
    stage = make(Latency, latency=50)
    stage.feed(Data(b"x", 1.0), 1.03)  # read at 1.0, reached this toxic 30 ms later
    assert stage.deadline() == pytest.approx(1.05)


def test_latency_moves_the_stamp_forward_by_the_delay() -> None:
    stage = make(Latency, latency=200)
    stage.feed(Data(b"x", 3.0), 3.0)
    ((when, event),) = run(stage)
    assert isinstance(event, Data)
    assert when == pytest.approx(3.2)
    assert event.stamp == pytest.approx(3.2)


@pytest.mark.parametrize("seed", [1, 2, 99])
def test_latency_jitter_is_drawn_per_chunk_from_the_stage_rng(seed: int) -> None:
    reference = random.Random(seed)
    expected_ms = [50 + reference.randrange(-10, 10) for _ in range(20)]
    assert len(set(expected_ms)) > 1  # the draws do differ from chunk to chunk

    stage = make(Latency, seed=seed, latency=50, jitter=10)
    for index in range(20):
        stamp = index * 1.0  # far apart: order never holds a chunk back here
        stage.feed(Data(bytes([index]), stamp), stamp)
    released = run(stage)

    assert [event for _, event in released] == [
        approx_data(bytes([index]), index + ms / 1000) for index, ms in enumerate(expected_ms)
    ]
    assert [when for when, _ in released] == pytest.approx(
        [index + ms / 1000 for index, ms in enumerate(expected_ms)]
    )


def test_latency_jitter_stays_in_minus_jitter_to_jitter_exclusive() -> None:
    stage = make(Latency, seed=5, latency=100, jitter=3)
    for index in range(300):
        stage.feed(Data(b"x", index * 1.0), index * 1.0)
    delays_ms = {round((when - index) * 1000) for index, (when, _) in enumerate(run(stage))}
    assert delays_ms == {97, 98, 99, 100, 101, 102}  # never 103: the top is excluded


def delays_ms(seed: int, latency: int, jitter: int) -> tuple[int, int]:
    """The first two delays a latency stage seeded with ``seed`` draws."""
    rng = random.Random(seed)
    return latency + rng.randrange(-jitter, jitter), latency + rng.randrange(-jitter, jitter)


def test_latency_never_lets_a_chunk_overtake_the_one_before() -> None:
    # A seed whose second draw is at least 20 ms shorter than its first.
    seed = next(s for s in range(1000) if delays_ms(s, 100, 50)[0] - delays_ms(s, 100, 50)[1] > 20)
    first_ms, second_ms = delays_ms(seed, 100, 50)
    assert first_ms > second_ms + 10  # unordered, the second would leave first

    stage = make(Latency, seed=seed, latency=100, jitter=50)
    stage.feed(Data(b"first", 0.0), 0.0)
    stage.feed(Data(b"second", 0.01), 0.01)
    released = run(stage)

    assert [event.data for _, event in released if isinstance(event, Data)] == [
        b"first",
        b"second",
    ]
    assert [when for when, _ in released] == pytest.approx([first_ms / 1000] * 2)


def test_latency_eof_follows_the_queued_data_without_delay_of_its_own() -> None:
    stage = make(Latency, latency=50)
    stage.feed(Data(b"a", 0.0), 0.0)
    stage.feed(EOF, 0.01)
    assert stage.poll(0.049) == []
    assert stage.poll(0.05) == [approx_data(b"a", 0.05), EOF]


def test_latency_eof_alone_leaves_at_once() -> None:
    stage = make(Latency, latency=500)
    stage.feed(EOF, 2.0)
    assert stage.deadline() == 2.0
    assert stage.poll(2.0) == [EOF]


def test_latency_zero_passes_at_once() -> None:
    stage = make(Latency, latency=0)
    stage.feed(Data(b"a", 4.0), 4.0)
    assert stage.poll(4.0) == [Data(b"a", 4.0)]


def test_latency_holding_counts_the_queued_bytes() -> None:
    stage = make(Latency, latency=100)
    stage.feed(Data(b"abc", 0.0), 0.0)
    stage.feed(Data(b"de", 0.05), 0.05)
    assert stage.holding == 5
    stage.poll(0.1)
    assert stage.holding == 2
    stage.poll(0.2)
    assert stage.holding == 0


def test_interrupt_lets_go_of_everything_held_in_order() -> None:
    stage = make(Latency, latency=1000)
    stage.feed(Data(b"a", 0.0), 0.0)
    stage.feed(Data(b"b", 0.1), 0.1)
    stage.feed(EOF, 0.2)
    # Let go early, the chunks were delayed until now: their stamps say so.
    assert stage.interrupt(0.3) == [Data(b"a", 0.3), Data(b"b", 0.3), EOF]
    assert stage.holding == 0
    assert stage.deadline() is None
    assert stage.poll(10.0) == []


def test_latency_interrupt_keeps_a_stamp_already_past() -> None:
    stage = make(Latency, latency=100)
    stage.feed(Data(b"a", 0.0), 0.0)  # due at 0.1, not polled yet
    assert stage.interrupt(0.5) == [approx_data(b"a", 0.1)]


def test_reset_discards_held_data_and_leaves_at_once() -> None:
    stage = make(Latency, latency=1000)
    stage.feed(Data(b"held", 0.0), 0.0)
    stage.feed(RESET, 0.1)
    assert stage.holding == 0
    assert stage.poll(0.1) == [RESET]
    stage.feed(Data(b"late", 0.2), 0.2)  # the connection is gone: nothing more
    assert run(stage) == []


def test_data_after_close_is_ignored() -> None:
    stage = make(Noop)
    stage.feed(CLOSE, 0.0)
    stage.feed(Data(b"late", 0.1), 0.1)
    stage.feed(EOF, 0.1)
    assert stage.poll(1.0) == [CLOSE]


# -- bandwidth ------------------------------------------------------------------


def test_bandwidth_kb_is_1000_bytes() -> None:
    stage = make(Bandwidth, rate=10)  # 10 000 bytes/s
    stage.feed(Data(b"x" * 1000, 0.0), 0.0)
    assert stage.deadline() == pytest.approx(0.1)
    assert stage.poll(0.0999) == []
    assert stage.poll(0.1) == [Data(b"x" * 1000, 0.0)]  # the stamp is kept


def test_bandwidth_bytes_leave_after_the_ones_before() -> None:
    stage = make(Bandwidth, rate=10)
    stage.feed(Data(b"a" * 500, 0.0), 0.0)
    stage.feed(Data(b"b" * 500, 0.01), 0.01)
    stage.feed(Data(b"c" * 200, 0.02), 0.02)
    assert [when for when, _ in run(stage)] == pytest.approx([0.05, 0.1, 0.12])


def test_bandwidth_builds_no_credit_while_idle() -> None:
    stage = make(Bandwidth, rate=10)
    stage.feed(Data(b"a" * 500, 0.0), 0.0)
    assert run(stage) == [(at(0.05), Data(b"a" * 500, 0.0))]
    stage.feed(Data(b"b" * 500, 1.0), 1.0)  # idle for 950 ms: still 50 ms for 500 bytes
    assert stage.deadline() == pytest.approx(1.05)


def test_bandwidth_splits_big_chunks_in_100_ms_pieces() -> None:
    stage = make(Bandwidth, rate=1)  # 1000 bytes/s: at most 100 bytes a piece
    data = bytes(range(250))
    stage.feed(Data(data, 0.5), 0.5)
    released = run(stage)
    assert [when for when, _ in released] == pytest.approx([0.6, 0.7, 0.75])
    assert [event for _, event in released] == [
        Data(data[:100], 0.5),
        Data(data[100:200], 0.5),
        Data(data[200:], 0.5),
    ]


@pytest.mark.parametrize(("rate", "size"), [(1, 1000), (3, 1000), (7, 2101), (50, 5000)])
def test_bandwidth_pieces_are_at_most_rate_times_100(rate: int, size: int) -> None:
    stage = make(Bandwidth, rate=rate)
    data = bytes(index % 251 for index in range(size))
    stage.feed(Data(data, 0.0), 0.0)
    released = run(stage)
    pieces = [event for _, event in released if isinstance(event, Data)]
    assert payload(pieces) == data
    assert max(len(piece.data) for piece in pieces) == min(rate * 100, size)
    assert released[-1][0] == pytest.approx(size / (rate * 1000))


def test_bandwidth_eof_waits_for_the_data() -> None:
    stage = make(Bandwidth, rate=10)
    stage.feed(Data(b"x" * 1000, 0.0), 0.0)
    stage.feed(EOF, 0.0)
    assert stage.poll(0.05) == []
    assert stage.poll(0.1) == [Data(b"x" * 1000, 0.0), EOF]


def test_bandwidth_holding_drops_as_pieces_leave() -> None:
    stage = make(Bandwidth, rate=1)
    stage.feed(Data(b"x" * 250, 0.0), 0.0)
    assert stage.holding == 250
    stage.poll(0.1)
    assert stage.holding == 150
    stage.poll(0.25)
    assert stage.holding == 0


def test_bandwidth_rate_zero_holds_everything_until_interrupt() -> None:
    stage = make(Bandwidth, rate=0)
    stage.feed(Data(b"one", 0.0), 0.0)
    stage.feed(Data(b"two", 0.1), 0.1)
    stage.feed(EOF, 0.2)
    assert stage.deadline() is None
    assert stage.poll(1e6) == []
    assert stage.holding == 6
    assert stage.interrupt(5.0) == [Data(b"one", 0.0), Data(b"two", 0.1), EOF]
    assert stage.holding == 0
    assert stage.interrupt(5.0) == []  # released once, not twice


def test_bandwidth_rate_zero_lets_a_bare_eof_through() -> None:
    stage = make(Bandwidth, rate=0)
    stage.feed(EOF, 1.0)
    assert stage.poll(1.0) == [EOF]


def test_bandwidth_interrupt_releases_queued_pieces_in_order() -> None:
    stage = make(Bandwidth, rate=1)
    data = bytes(range(250))
    stage.feed(Data(data, 0.0), 0.0)
    assert stage.poll(0.1) == [Data(data[:100], 0.0)]
    assert stage.interrupt(0.1) == [Data(data[100:200], 0.0), Data(data[200:], 0.0)]
    stage.feed(Data(b"y" * 100, 0.2), 0.2)  # the old schedule is gone
    assert stage.deadline() == pytest.approx(0.3)


# -- slow_close -----------------------------------------------------------------


def test_slow_close_passes_data_at_once() -> None:
    stage = make(SlowClose, delay=1000)
    stage.feed(Data(b"abc", 1.0), 1.0)
    assert stage.poll(1.0) == [Data(b"abc", 1.0)]


@pytest.mark.parametrize("end", [EOF, CLOSE])
def test_slow_close_holds_the_end_for_delay_ms(end: Marker) -> None:
    stage = make(SlowClose, delay=200)
    stage.feed(Data(b"abc", 1.0), 1.0)
    stage.feed(end, 1.0)
    assert stage.poll(1.0) == [Data(b"abc", 1.0)]
    assert stage.deadline() == pytest.approx(1.2)
    assert stage.poll(1.1999) == []
    assert stage.poll(1.2) == [end]


def test_slow_close_delay_counts_from_the_end_not_from_start() -> None:
    stage = make(SlowClose, 0.0, delay=300)
    stage.feed(EOF, 5.0)
    assert run(stage) == [(at(5.3), EOF)]


# -- timeout --------------------------------------------------------------------


def test_timeout_drops_data() -> None:
    stage = make(Timeout, timeout=100)
    stage.feed(Data(b"lost", 0.01), 0.01)
    assert stage.poll(0.05) == []
    assert stage.holding == 0


def test_timeout_zero_never_closes() -> None:
    stage = make(Timeout, timeout=0)
    stage.feed(Data(b"lost", 1.0), 1.0)
    assert stage.deadline() is None
    assert stage.poll(1e9) == []


def test_timeout_closes_once_timeout_ms_pass_from_start() -> None:
    stage = make(Timeout, 2.0, timeout=100)
    assert stage.deadline() == pytest.approx(2.1)
    assert stage.poll(2.0999) == []
    assert stage.poll(2.1) == [CLOSE]
    assert stage.deadline() is None
    assert stage.poll(100.0) == []  # once


def test_timeout_each_dropped_chunk_restarts_the_wait() -> None:
    stage = make(Timeout, 0.0, timeout=100)
    stage.feed(Data(b"a", 0.08), 0.08)
    assert stage.deadline() == pytest.approx(0.18)
    assert stage.poll(0.1) == []
    stage.feed(Data(b"b", 0.15), 0.15)
    assert stage.poll(0.18) == []
    assert run(stage) == [(at(0.25), CLOSE)]


def test_timeout_eof_passes_and_stops_the_timer() -> None:
    stage = make(Timeout, 0.0, timeout=100)
    stage.feed(EOF, 0.05)
    assert stage.poll(0.05) == [EOF]
    assert stage.deadline() is None
    assert stage.poll(10.0) == []


def test_timeout_cleanup_closes_a_connection_still_held() -> None:
    stage = make(Timeout, timeout=0)
    stage.feed(Data(b"lost", 0.0), 0.0)
    assert stage.cleanup(1.0) == [CLOSE]


def test_timeout_cleanup_after_an_eof_still_closes() -> None:
    stage = make(Timeout, timeout=100)
    stage.feed(EOF, 0.0)
    assert stage.poll(0.0) == [EOF]
    assert stage.cleanup(1.0) == [CLOSE]


def test_timeout_cleanup_after_it_closed_does_not_close_again() -> None:
    stage = make(Timeout, timeout=100)
    assert run(stage) == [(at(0.1), CLOSE)]
    assert stage.cleanup(1.0) == []


def test_timeout_cleanup_after_an_upstream_close_does_not_close_again() -> None:
    stage = make(Timeout, timeout=100)
    stage.feed(CLOSE, 0.05)
    assert stage.poll(0.05) == [CLOSE]
    assert stage.cleanup(1.0) == []


@pytest.mark.parametrize("timeout", [0, 100])
def test_timeout_interrupt_does_not_close(timeout: int) -> None:
    stage = make(Timeout, timeout=timeout)
    stage.feed(Data(b"lost", 0.01), 0.01)
    assert stage.interrupt(0.02) == []
    assert stage.poll(0.02) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [(0, 100, 5.1), (10_000, 100, 5.1), (100, 300, 5.3)],
)
def test_timeout_update_restarts_the_wait_with_the_new_timeout(
    old: int, new: int, expected: float
) -> None:
    """An update (interrupt, then configure) restarts Toxiproxy's timer from now."""
    stage = make(Timeout, 0.0, timeout=old)
    stage.feed(Data(b"lost", 4.99), 4.99)
    assert stage.interrupt(5.0) == []
    stage.configure({"timeout": new})
    assert stage.deadline() == pytest.approx(expected)
    assert run(stage) == [(at(expected), CLOSE)]


def test_timeout_update_to_zero_stops_the_timer() -> None:
    stage = make(Timeout, 0.0, timeout=100)
    stage.interrupt(0.05)
    stage.configure({"timeout": 0})
    assert stage.deadline() is None
    assert stage.poll(1e9) == []


def test_timeout_update_after_the_eof_does_not_rearm() -> None:
    stage = make(Timeout, 0.0, timeout=100)
    stage.feed(EOF, 0.01)
    assert stage.interrupt(0.02) == [EOF]
    stage.configure({"timeout": 50})
    assert stage.deadline() is None
    assert stage.poll(10.0) == []


def test_timeout_update_after_it_closed_does_not_close_again() -> None:
    stage = make(Timeout, 0.0, timeout=100)
    assert stage.poll(0.1) == [CLOSE]
    stage.interrupt(0.2)
    stage.configure({"timeout": 50})
    assert stage.deadline() is None
    assert stage.poll(10.0) == []


# -- reset_peer -----------------------------------------------------------------


def test_reset_peer_does_nothing_before_the_first_data() -> None:
    stage = make(ResetPeer, timeout=100)
    assert stage.deadline() is None
    assert stage.poll(1e6) == []


@pytest.mark.parametrize("trigger", [Data(b"first", 1.0), EOF])
def test_reset_peer_resets_timeout_ms_after_the_trigger(trigger: Event) -> None:
    stage = make(ResetPeer, timeout=100)
    stage.feed(trigger, 1.0)
    assert stage.deadline() == pytest.approx(1.1)
    assert stage.poll(1.0) == []  # the trigger itself does not pass
    assert stage.poll(1.0999) == []
    assert stage.poll(1.1) == [RESET]
    assert stage.deadline() is None
    assert stage.poll(100.0) == []  # once


def test_reset_peer_drops_data_after_the_trigger_and_keeps_its_time() -> None:
    stage = make(ResetPeer, timeout=100)
    stage.feed(Data(b"first", 1.0), 1.0)
    stage.feed(Data(b"second", 1.05), 1.05)
    stage.feed(EOF, 1.06)
    assert stage.deadline() == pytest.approx(1.1)
    assert stage.holding == 0
    assert run(stage) == [(at(1.1), RESET)]


def test_reset_peer_timeout_zero_resets_at_the_trigger() -> None:
    stage = make(ResetPeer, timeout=0)
    stage.feed(Data(b"x", 3.0), 3.0)
    assert stage.poll(3.0) == [RESET]


def test_reset_peer_ignores_everything_after_the_reset() -> None:
    stage = make(ResetPeer, timeout=10)
    stage.feed(Data(b"x", 0.0), 0.0)
    assert stage.poll(0.01) == [RESET]
    stage.feed(Data(b"y", 0.02), 0.02)
    assert stage.deadline() is None
    assert stage.poll(10.0) == []


# -- slicer ---------------------------------------------------------------------


SLICER_CASES = [
    # (average_size, size_variation, size)
    (1, 0, 17),
    (4, 0, 8),
    (3, 2, 1),
    (10, 5, 1000),
    (64, 63, 4096),
    (100, 10, 99),
    (100, 10, 110),
    (100, 10, 111),
    (7, 3, 12345),
]


@pytest.mark.parametrize(("average", "variation", "size"), SLICER_CASES)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_slicer_cut_points_cover_the_chunk_in_bounded_pieces(
    average: int, variation: int, size: int, seed: int
) -> None:
    stage = make(Slicer, seed=seed, average_size=average, size_variation=variation)
    points = stage.cut_points(size)
    assert points[0] == 0
    assert points[-1] == size
    pieces = [end - begin for begin, end in itertools.pairwise(points)]
    assert all(0 < piece <= average + variation for piece in pieces), pieces


@pytest.mark.parametrize(
    ("average", "size", "expected"),
    [
        (4, 4, [0, 4]),
        (4, 3, [0, 3]),
        (4, 8, [0, 4, 8]),
        (4, 9, [0, 4, 6, 9]),
        (2, 9, [0, 2, 4, 6, 7, 9]),
        (1, 4, [0, 1, 2, 3, 4]),
    ],
)
def test_slicer_without_variation_halves_until_within_the_average(
    average: int, size: int, expected: list[int]
) -> None:
    stage = make(Slicer, average_size=average, size_variation=0)
    assert stage.cut_points(size) == expected


@pytest.mark.parametrize(("average", "variation", "size"), SLICER_CASES)
def test_slicer_same_seed_same_cut(average: int, variation: int, size: int) -> None:
    cuts = [
        make(Slicer, seed=42, average_size=average, size_variation=variation).cut_points(size)
        for _ in range(2)
    ]
    assert cuts[0] == cuts[1]


def test_slicer_the_seed_does_shape_the_cut() -> None:
    cuts = {
        tuple(make(Slicer, seed=seed, average_size=10, size_variation=5).cut_points(1000))
        for seed in range(5)
    }
    assert len(cuts) > 1


def test_slicer_pieces_leave_delay_us_apart_and_add_up_to_the_input() -> None:
    stage = make(Slicer, seed=3, average_size=10, size_variation=4, delay=2500)
    data = bytes(range(200))
    stage.feed(Data(data, 1.0), 1.0)
    released = run(stage)
    points = make(Slicer, seed=3, average_size=10, size_variation=4).cut_points(200)
    assert [event for _, event in released] == [
        Data(data[begin:end], 1.0) for begin, end in itertools.pairwise(points)
    ]
    assert [when for when, _ in released] == pytest.approx(
        [1.0 + index * 0.0025 for index in range(len(points) - 1)]
    )


def test_slicer_next_chunk_queues_after_the_pieces_before() -> None:
    stage = make(Slicer, average_size=1, size_variation=0, delay=100_000)  # 100 ms apart
    stage.feed(Data(b"ab", 0.0), 0.0)  # pieces at 0.0 and 0.1
    stage.feed(Data(b"cd", 0.05), 0.05)  # after them: 0.2 and 0.3
    released = run(stage)
    assert [when for when, _ in released] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert payload([event for _, event in released]) == b"abcd"


def test_slicer_delay_zero_releases_every_piece_at_once() -> None:
    stage = make(Slicer, average_size=2, size_variation=0)
    stage.feed(Data(b"abcdefgh", 0.5), 0.5)
    assert stage.poll(0.5) == [
        Data(b"ab", 0.5),
        Data(b"cd", 0.5),
        Data(b"ef", 0.5),
        Data(b"gh", 0.5),
    ]


def test_slicer_interrupt_drops_the_old_schedule() -> None:
    stage = make(Slicer, average_size=1, size_variation=0, delay=1_000_000)  # 1 s apart
    stage.feed(Data(b"abcd", 0.0), 0.0)
    assert stage.interrupt(0.5) == [Data(bytes([byte]), 0.0) for byte in b"abcd"]
    stage.configure({"average_size": 1, "size_variation": 0, "delay": 0})
    stage.feed(Data(b"x", 1.0), 1.0)
    assert stage.poll(1.0) == [Data(b"x", 1.0)]


# -- limit_data -----------------------------------------------------------------


def test_limit_data_cuts_the_crossing_chunk_then_closes() -> None:
    stage = make(LimitData, bytes=10)
    stage.feed(Data(b"abcd", 0.0), 0.0)
    stage.feed(Data(b"efgh", 0.1), 0.1)
    assert stage.poll(0.1) == [Data(b"abcd", 0.0), Data(b"efgh", 0.1)]
    stage.feed(Data(b"ijklmn", 0.2), 0.2)
    assert stage.poll(0.2) == [Data(b"ij", 0.2), CLOSE]
    stage.feed(Data(b"late", 0.3), 0.3)
    assert stage.poll(0.3) == []
    assert stage.transmitted == 10


def test_limit_data_closes_on_a_chunk_that_reaches_the_limit_exactly() -> None:
    stage = make(LimitData, bytes=4)
    stage.feed(Data(b"abcd", 0.0), 0.0)
    assert stage.poll(0.0) == [Data(b"abcd", 0.0), CLOSE]


def test_limit_data_zero_closes_on_the_first_chunk() -> None:
    stage = make(LimitData, bytes=0)
    assert stage.deadline() is None
    stage.feed(Data(b"abcd", 0.0), 0.0)
    assert stage.poll(0.0) == [CLOSE]


def test_limit_data_eof_passes_below_the_limit() -> None:
    stage = make(LimitData, bytes=10)
    stage.feed(Data(b"abc", 0.0), 0.0)
    stage.feed(EOF, 0.0)
    assert stage.poll(0.0) == [Data(b"abc", 0.0), EOF]


def test_limit_data_count_survives_configure() -> None:
    stage = make(LimitData, bytes=10)
    stage.feed(Data(b"x" * 6, 0.0), 0.0)
    stage.configure({"bytes": 20})
    stage.feed(Data(b"y" * 10, 0.1), 0.1)
    assert stage.poll(0.1) == [Data(b"x" * 6, 0.0), Data(b"y" * 10, 0.1)]
    assert stage.transmitted == 16
    stage.feed(Data(b"z" * 10, 0.2), 0.2)
    assert stage.poll(0.2) == [Data(b"z" * 4, 0.2), CLOSE]


def test_limit_data_lowered_below_the_count_closes_on_the_next_chunk() -> None:
    stage = make(LimitData, bytes=10)
    stage.feed(Data(b"x" * 6, 0.0), 0.0)
    stage.configure({"bytes": 3})
    stage.feed(Data(b"y", 0.1), 0.1)
    assert stage.poll(0.1) == [Data(b"x" * 6, 0.0), CLOSE]


# -- noop -----------------------------------------------------------------------


@pytest.mark.parametrize("event", [Data(b"abc", 0.5), EOF, CLOSE, RESET])
def test_noop_passes_everything_at_once(event: Event) -> None:
    stage = make(Noop)
    stage.feed(event, 1.0)
    assert stage.deadline() == 1.0
    assert stage.poll(1.0) == [event]


def test_noop_keeps_order_and_stamps() -> None:
    stage = make(Noop)
    events: list[Event] = [Data(b"a", 0.1), Data(b"b", 0.2), EOF]
    for event in events:
        stage.feed(event, 0.3)
    assert stage.poll(0.3) == events


# -- the registry ---------------------------------------------------------------


def test_toxic_types_match_toxiproxy_then_the_protocol_toxics() -> None:
    assert {name: cls.attribute_names for name, cls in TOXIC_TYPES.items()} == {
        "latency": ("latency", "jitter"),
        "bandwidth": ("rate",),
        "slow_close": ("delay",),
        "timeout": ("timeout",),
        "reset_peer": ("timeout",),
        "slicer": ("average_size", "size_variation", "delay"),
        "limit_data": ("bytes",),
        "noop": (),
        "pg_login": ("action", "delay", "sqlstate", "message"),
        "pg_error": ("sqlstate", "message", "match", "nth"),
        "pg_delay": ("delay", "match", "nth"),
        "pg_hang": ("match", "nth"),
        "pg_cut": ("after_rows", "match", "nth", "reset"),
        "smtp_reply": ("command", "code", "text", "nth"),
        "smtp_delay": ("command", "delay", "nth"),
        "smtp_cut": ("after", "nth", "reset"),
    }


@pytest.mark.parametrize(
    ("stage", "held"),
    [
        (Bandwidth({"rate": 0}, random.Random(1)), Data(b"stalled", 0.0)),
        (Timeout({"timeout": 10}, random.Random(1)), Data(b"dropped", 0.0)),
        (ResetPeer({"timeout": 1000}, random.Random(1)), Data(b"trigger", 0.0)),
        (Latency({"latency": 1000}, random.Random(1)), Data(b"held", 0.0)),
    ],
)
def test_a_reset_from_upstream_overtakes_everything_held(stage: Stage, held: Data) -> None:
    stage.start(0.0)
    stage.feed(held, 0.0)
    stage.feed(RESET, 0.005)
    assert stage.deadline() == 0.005
    assert stage.poll(0.02) == [RESET]
    assert stage.poll(5.0) == []
    assert stage.deadline() is None
    assert stage.holding == 0
    assert stage.interrupt(5.0) == []
