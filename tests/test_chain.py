"""ToxicChain: stages run in order on a fake clock, and toxics join, change or
leave while data is in flight without losing or reordering any of it."""

from __future__ import annotations

import random
from typing import TypeVar, cast

import pytest

from pytest_asyncfaults._toxics import (
    CLOSE,
    EOF,
    RESET,
    Bandwidth,
    Data,
    Event,
    Latency,
    LimitData,
    Noop,
    Slicer,
    SlowClose,
    Stage,
    Timeout,
)
from pytest_asyncfaults._toxics._chain import ToxicChain

S = TypeVar("S", bound=Stage)


def new(cls: type[S], **attributes: int) -> S:
    return cls(attributes, random.Random(1))


def chain_of(*stages: tuple[str, Stage], now: float = 0.0) -> ToxicChain:
    chain = ToxicChain()
    for name, stage in stages:
        assert chain.append(name, stage, now) == []
    return chain


def at(when: float) -> float:
    return cast(float, pytest.approx(when))


def run(chain: ToxicChain, until: float = 1e9) -> list[tuple[float, Event]]:
    """Pump ``chain`` at each deadline up to ``until``: what leaves, and when."""
    out: list[tuple[float, Event]] = []
    for _ in range(10_000):
        when = chain.deadline()
        if when is None or when > until:
            return out
        out.extend((when, event) for event in chain.pump(when))
    raise AssertionError("the chain never settles")


def test_an_empty_chain_passes_events_straight_through() -> None:
    chain = ToxicChain()
    assert not chain
    assert len(chain) == 0
    assert chain.feed(Data(b"a", 1.0), 1.0) == [Data(b"a", 1.0)]
    assert chain.feed(EOF, 1.0) == [EOF]
    assert chain.deadline() is None
    assert chain.holding == 0


def test_names_len_and_stage_lookup() -> None:
    latency, noop = new(Latency, latency=10), new(Noop)
    chain = chain_of(("lat", latency), ("nop", noop))
    assert chain
    assert len(chain) == 2
    assert chain.names == ["lat", "nop"]
    assert chain.stage("lat") is latency
    assert chain.stage("nop") is noop
    with pytest.raises(KeyError, match="missing"):
        chain.stage("missing")
    with pytest.raises(KeyError, match="missing"):
        chain.remove("missing", 0.0)


def test_feed_returns_what_passes_at_once() -> None:
    chain = chain_of(("a", new(Noop)), ("b", new(SlowClose, delay=100)))
    assert chain.feed(Data(b"x", 0.0), 0.0) == [Data(b"x", 0.0)]
    assert chain.feed(EOF, 0.0) == []
    assert chain.deadline() == at(0.1)
    assert chain.pump(0.1) == [EOF]


def test_stacked_latencies_add_up() -> None:
    chain = chain_of(("a", new(Latency, latency=50)), ("b", new(Latency, latency=30)))
    assert chain.feed(Data(b"x", 0.0), 0.0) == []
    assert chain.deadline() == at(0.05)
    assert chain.pump(0.05) == []
    assert chain.deadline() == at(0.08)
    assert chain.pump(0.0799) == []
    assert chain.pump(0.08) == [Data(b"x", at(0.08))]
    assert chain.deadline() is None


def test_one_pump_carries_events_through_every_stage_due() -> None:
    chain = chain_of(
        ("a", new(Latency, latency=50)), ("b", new(Noop)), ("c", new(Latency, latency=0))
    )
    chain.feed(Data(b"x", 0.0), 0.0)
    assert chain.pump(0.05) == [Data(b"x", at(0.05))]


def test_latency_then_bandwidth_keeps_order_and_timing() -> None:
    chain = chain_of(("lat", new(Latency, latency=100)), ("bw", new(Bandwidth, rate=10)))
    chain.feed(Data(b"a" * 1000, 0.0), 0.0)
    chain.feed(Data(b"b" * 500, 0.01), 0.01)
    chain.feed(EOF, 0.02)
    released = run(chain)
    # a: latency until 0.1, then 100 ms of bandwidth; b: reaches bandwidth at 0.11,
    # waits for a, then 50 ms; the EOF follows b.
    assert [when for when, _ in released] == pytest.approx([0.2, 0.25, 0.25])
    assert [event.data[:1] if isinstance(event, Data) else event for _, event in released] == [
        b"a",
        b"b",
        EOF,
    ]


def test_deadline_is_the_soonest_of_the_stages() -> None:
    chain = chain_of(("slow", new(Timeout, timeout=500)), ("lat", new(Latency, latency=100)))
    assert chain.deadline() == at(0.5)
    chain2 = chain_of(("lat", new(Latency, latency=100)), ("slow", new(Timeout, timeout=500)))
    chain2.feed(Data(b"x", 0.0), 0.0)
    assert chain2.deadline() == at(0.1)


def test_holding_counts_bytes_held_across_stages() -> None:
    chain = chain_of(("lat", new(Latency, latency=100)), ("bw", new(Bandwidth, rate=0)))
    chain.feed(Data(b"abc", 0.0), 0.0)
    chain.feed(Data(b"de", 0.05), 0.05)
    assert chain.holding == 5
    chain.pump(0.1)  # abc moves on into bandwidth, where it stalls
    assert chain.stage("lat").holding == 2
    assert chain.stage("bw").holding == 3
    assert chain.holding == 5
    assert chain.remove("bw", 0.2) == [Data(b"abc", at(0.1))]
    assert chain.holding == 2


def test_append_joins_at_the_end_and_pumps() -> None:
    chain = chain_of(("lat", new(Latency, latency=50)))
    chain.feed(Data(b"x", 0.0), 0.0)
    assert chain.append("nop", new(Noop), 0.1) == [Data(b"x", at(0.05))]
    assert chain.names == ["lat", "nop"]


def test_append_starts_the_stage_at_now() -> None:
    chain = chain_of(("nop", new(Noop)))
    assert chain.append("t", new(Timeout, timeout=100), 3.0) == []
    assert chain.deadline() == at(3.1)
    assert chain.pump(3.1) == [CLOSE]


def test_remove_passes_what_the_stage_held_into_the_next_stage() -> None:
    chain = chain_of(("bw", new(Bandwidth, rate=0)), ("lat", new(Latency, latency=50)))
    chain.feed(Data(b"one", 0.0), 0.0)
    chain.feed(Data(b"two", 0.01), 0.01)
    chain.feed(EOF, 0.02)
    assert chain.holding == 6
    # Not straight out: through the latency stage, which counts from the stamps.
    assert chain.remove("bw", 0.03) == []
    assert chain.names == ["lat"]
    assert run(chain) == [
        (at(0.05), Data(b"one", at(0.05))),
        (at(0.06), Data(b"two", at(0.06))),
        (at(0.06), EOF),
    ]


def test_remove_of_the_last_stage_lets_go_at_once() -> None:
    chain = chain_of(("nop", new(Noop)), ("lat", new(Latency, latency=1000)))
    chain.feed(Data(b"a", 0.0), 0.0)
    chain.feed(EOF, 0.0)
    assert chain.remove("lat", 0.5) == [Data(b"a", 0.5), EOF]
    assert chain.holding == 0
    assert chain.deadline() is None


def test_remove_never_reorders_with_data_already_downstream() -> None:
    chain = chain_of(("a", new(Latency, latency=100)), ("b", new(Latency, latency=100)))
    chain.feed(Data(b"X", 0.0), 0.0)
    assert chain.pump(0.1) == []  # X is in b until 0.2
    chain.feed(Data(b"Y", 0.15), 0.15)  # Y is in a until 0.25
    assert chain.remove("a", 0.16) == []
    # Y enters b at 0.16 and waits b's 100 ms from there, not a's rest too.
    assert run(chain) == [
        (at(0.2), Data(b"X", at(0.2))),
        (at(0.26), Data(b"Y", at(0.26))),
    ]


def test_remove_never_reorders_even_when_the_next_stage_is_faster() -> None:
    chain = chain_of(("a", new(Latency, latency=100)), ("b", new(Latency, latency=0)))
    chain.feed(Data(b"X", 0.0), 0.0)
    chain.feed(Data(b"Y", 0.01), 0.01)
    assert chain.pump(0.1) == [Data(b"X", at(0.1))]
    assert chain.remove("a", 0.105) == [Data(b"Y", 0.105)]


def test_remove_a_latency_drops_the_rest_of_its_delay() -> None:
    chain = chain_of(("slow", new(Latency, latency=10_000)), ("lat", new(Latency, latency=50)))
    chain.feed(Data(b"x", 0.0), 0.0)
    assert chain.remove("slow", 1.0) == []
    assert run(chain) == [(at(1.05), Data(b"x", at(1.05)))]


def test_remove_a_timeout_closes_after_what_it_held() -> None:
    chain = chain_of(("slow", new(SlowClose, delay=0)), ("t", new(Timeout, timeout=0)))
    chain.feed(Data(b"lost", 0.0), 0.0)
    assert chain.remove("t", 1.0) == [CLOSE]
    assert chain.names == ["slow"]


def test_remove_a_timeout_in_the_middle_sends_its_close_down_the_chain() -> None:
    chain = chain_of(("t", new(Timeout, timeout=0)), ("sc", new(SlowClose, delay=200)))
    assert chain.remove("t", 1.0) == []
    assert run(chain) == [(at(1.2), CLOSE)]


def test_remove_without_cleanup_does_not_close() -> None:
    chain = chain_of(("t", new(Timeout, timeout=0)))
    chain.feed(Data(b"lost", 0.0), 0.0)
    assert chain.remove("t", 1.0, cleanup=False) == []
    assert not chain


def test_remove_a_timeout_that_already_closed_does_not_close_again() -> None:
    chain = chain_of(("t", new(Timeout, timeout=100)))
    assert run(chain) == [(at(0.1), CLOSE)]
    assert chain.remove("t", 1.0) == []


def test_replace_passes_the_held_data_on_past_the_new_stage() -> None:
    chain = chain_of(("bw", new(Bandwidth, rate=0)), ("lat", new(Latency, latency=50)))
    chain.feed(Data(b"one", 0.0), 0.0)
    # What the old stage held already went through this toxic: the new (slow)
    # stage does not delay it again, the next stage does.
    assert chain.replace("bw", new(Latency, latency=1000), 0.01) == []
    assert chain.names == ["bw", "lat"]
    chain.feed(Data(b"two", 0.02), 0.02)
    assert run(chain) == [
        (at(0.05), Data(b"one", at(0.05))),
        (at(1.07), Data(b"two", at(1.07))),
    ]


def test_replace_of_the_last_stage_lets_go_at_once() -> None:
    chain = chain_of(("bw", new(Bandwidth, rate=0)))
    chain.feed(Data(b"one", 0.0), 0.0)
    chain.feed(EOF, 0.0)
    assert chain.replace("bw", new(Noop), 0.5) == [Data(b"one", 0.0), EOF]
    assert chain.feed(Data(b"two", 0.6), 0.6) == [Data(b"two", 0.6)]
    assert chain.holding == 0


def test_replace_starts_the_new_stage_at_now() -> None:
    chain = chain_of(("t", new(Noop)))
    assert chain.replace("t", new(Timeout, timeout=100), 2.0) == []
    assert chain.deadline() == at(2.1)
    assert chain.pump(2.1) == [CLOSE]


def test_replace_does_not_clean_up_the_old_stage() -> None:
    chain = chain_of(("t", new(Timeout, timeout=0)))
    chain.feed(Data(b"lost", 0.0), 0.0)
    assert chain.replace("t", new(Noop), 1.0) == []
    assert chain.feed(Data(b"kept", 1.1), 1.1) == [Data(b"kept", 1.1)]


def test_reconfigure_releases_held_data_and_applies_the_new_attributes() -> None:
    chain = chain_of(("bw", new(Bandwidth, rate=0)))
    chain.feed(Data(b"a" * 100, 0.0), 0.0)
    chain.feed(Data(b"b" * 100, 0.1), 0.1)
    assert chain.reconfigure("bw", {"rate": 1}, 1.0) == [
        Data(b"a" * 100, 0.0),
        Data(b"b" * 100, 0.1),
    ]
    assert chain.holding == 0
    assert chain.feed(Data(b"c" * 100, 2.0), 2.0) == []
    assert chain.deadline() == at(2.1)  # 100 bytes at 1 KB/s


def test_reconfigure_passes_held_data_into_the_next_stage() -> None:
    chain = chain_of(("lat", new(Latency, latency=1000)), ("lat2", new(Latency, latency=50)))
    chain.feed(Data(b"x", 0.0), 0.0)
    assert chain.reconfigure("lat", {"latency": 10}, 0.5) == []
    assert chain.stage("lat2").holding == 1
    # Held data left "lat" at once, then waits lat2's 50 ms, not the rest of lat's.
    assert run(chain) == [(at(0.55), Data(b"x", at(0.55)))]


def test_reconfigure_keeps_counted_state() -> None:
    chain = chain_of(("limit", new(LimitData, bytes=10)))
    assert chain.feed(Data(b"x" * 6, 0.0), 0.0) == [Data(b"x" * 6, 0.0)]
    assert chain.reconfigure("limit", {"bytes": 20}, 0.1) == []
    assert chain.feed(Data(b"y" * 10, 0.2), 0.2) == [Data(b"y" * 10, 0.2)]
    assert chain.feed(Data(b"z" * 10, 0.3), 0.3) == [Data(b"z" * 4, 0.3), CLOSE]


def test_reconfigure_a_timeout_restarts_its_wait() -> None:
    chain = chain_of(("t", new(Timeout, timeout=0)))
    chain.feed(Data(b"lost", 1.0), 1.0)
    assert chain.reconfigure("t", {"timeout": 100}, 5.0) == []
    assert run(chain) == [(at(5.1), CLOSE)]


def test_reconfigure_a_slicer_lets_new_data_go_on_the_new_schedule() -> None:
    chain = chain_of(("s", new(Slicer, average_size=1, size_variation=0, delay=1_000_000)))
    assert chain.feed(Data(b"abc", 0.0), 0.0) == [Data(b"a", 0.0)]
    assert chain.reconfigure("s", {"average_size": 1, "size_variation": 0, "delay": 0}, 0.5) == [
        Data(b"b", 0.0),
        Data(b"c", 0.0),
    ]
    assert chain.feed(Data(b"de", 0.6), 0.6) == [Data(b"d", 0.6), Data(b"e", 0.6)]


def test_a_reset_overtakes_held_data_through_the_chain() -> None:
    chain = chain_of(("lat", new(Latency, latency=100)), ("sc", new(SlowClose, delay=100)))
    chain.feed(Data(b"held", 0.0), 0.0)
    assert chain.feed(RESET, 0.01) == [RESET]
    assert chain.holding == 0
    assert run(chain) == []


def test_a_close_from_limit_data_ends_the_later_stages() -> None:
    chain = chain_of(("limit", new(LimitData, bytes=2)), ("lat", new(Latency, latency=10)))
    chain.feed(Data(b"abcd", 0.0), 0.0)
    chain.feed(Data(b"late", 0.001), 0.001)
    assert run(chain) == [(at(0.01), Data(b"ab", at(0.01))), (at(0.01), CLOSE)]
