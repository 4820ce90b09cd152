"""The shared histogram and the Prometheus collector pattern, on plain numbers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

import fleetpool
from fleetpool import prometheus
from fleetpool.histogram import Histogram

BUCKETS = (0.01, 0.1, 1.0)


def test_observe_counts_into_buckets_upper_bound_inclusive() -> None:
    h = Histogram(BUCKETS)
    for v in (0.005, 0.01, 0.05, 2.0):
        h.observe(v)
    assert h.counts == [2, 1, 0, 1]
    assert h.n == 4 and h.total == pytest.approx(2.065)
    assert h.cumulative() == [("0.01", 2), ("0.1", 3), ("1.0", 3), ("+Inf", 4)]


def test_quantile_is_the_upper_bound_of_its_bucket() -> None:
    h = Histogram(BUCKETS)
    assert h.quantile(0.99) == 0.0  # empty
    for v in [0.005] * 98 + [0.5, 5.0]:
        h.observe(v)
    assert h.quantile(0.5) == 0.01
    assert h.quantile(0.99) == 1.0
    assert h.quantile(1.0) == float("inf")


@given(
    a=st.lists(st.floats(0, 10, allow_nan=False), max_size=50),
    b=st.lists(st.floats(0, 10, allow_nan=False), max_size=50),
)
def test_merging_equals_observing_everything_in_one(a: list[float], b: list[float]) -> None:
    one, two, both = Histogram(BUCKETS), Histogram(BUCKETS), Histogram(BUCKETS)
    for v in a:
        one.observe(v)
        both.observe(v)
    for v in b:
        two.observe(v)
        both.observe(v)
    via_dict = Histogram(BUCKETS)
    assert via_dict.merge_dict(one.as_dict()) and via_dict.merge_dict(two.as_dict())
    one.merge(two)
    for h in (one, via_dict):
        assert h.counts == both.counts and h.n == both.n
        assert h.total == pytest.approx(both.total)


def test_mismatched_shapes_are_refused() -> None:
    h = Histogram(BUCKETS)
    assert not h.merge_dict(None)
    assert not h.merge_dict({"counts": [1, 2], "sum": 1.0, "n": 3})
    assert h.n == 0
    with pytest.raises(fleetpool.ConfigError, match="different buckets"):
        h.merge(Histogram((1.0,)))
    with pytest.raises(fleetpool.ConfigError, match="increasing"):
        Histogram((1.0, 0.5))
    with pytest.raises(fleetpool.ConfigError, match="needs 4 counts"):
        Histogram(BUCKETS, [0, 0])


def test_one_collector_per_name_and_registry() -> None:
    h = Histogram(BUCKETS)
    h.observe(0.05)

    def collect() -> Iterator[Any]:
        core = prometheus.families()
        fam = core.HistogramMetricFamily("fp_test_seconds", "test", labels=["part"])
        prometheus.add_histogram(fam, ["x"], h)
        yield fam

    registry = CollectorRegistry()
    first = prometheus.register("fp_test", collect, registry)
    assert prometheus.register("fp_test", collect, registry) is first
    text = generate_latest(registry).decode()
    assert 'fp_test_seconds_bucket{le="0.1",part="x"} 1.0' in text
    assert 'fp_test_seconds_count{part="x"} 1.0' in text
