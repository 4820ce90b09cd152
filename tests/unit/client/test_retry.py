"""Backoff strategies are pure and bounded; plan_retry respects the deadline."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fleetpool
from fleetpool.client.retry import (
    DecorrelatedJitterBackoff,
    EqualJitterBackoff,
    ExponentialBackoff,
    FullJitterBackoff,
    backoff_named,
    plan_retry,
)


def test_exponential_doubles_and_caps() -> None:
    b = ExponentialBackoff(base=0.1, cap=1.0)
    assert [b.compute(n) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert b.compute(10_000) == 1.0  # no overflow


@given(attempt=st.integers(min_value=1, max_value=5000), seed=st.integers(0, 2**32))
def test_jittered_delays_stay_in_bounds(attempt: int, seed: int) -> None:
    base, cap = 0.05, 2.0
    ceiling = min(cap, base * 2 ** min(attempt - 1, 62))
    full = FullJitterBackoff(base, cap, rng=random.Random(seed)).compute(attempt)
    assert 0 <= full <= ceiling
    equal = EqualJitterBackoff(base, cap, rng=random.Random(seed)).compute(attempt)
    assert ceiling / 2 <= equal <= ceiling


def test_decorrelated_grows_from_previous_and_caps() -> None:
    b = DecorrelatedJitterBackoff(base=0.01, cap=0.5, rng=random.Random(7))
    delays = [b.compute(n) for n in range(1, 50)]
    assert all(0.01 <= d <= 0.5 for d in delays)
    assert max(delays) > 0.1  # it does grow
    b.reset()
    assert b.compute(1) <= 0.03


def test_jitter_spreads_a_crowd() -> None:
    delays = {round(EqualJitterBackoff(rng=random.Random(i)).compute(3), 6) for i in range(50)}
    assert len(delays) > 40


def test_named_and_invalid() -> None:
    assert isinstance(backoff_named("full"), FullJitterBackoff)
    with pytest.raises(fleetpool.ConfigError):
        backoff_named("linear")
    with pytest.raises(fleetpool.ConfigError):
        ExponentialBackoff(base=0, cap=1)


def test_plan_retry_fits_the_deadline() -> None:
    assert plan_retry(0.5, now=10.0, deadline=12.0) == 0.5
    assert plan_retry(5.0, now=10.0, deadline=12.0) == 2.0
    assert plan_retry(0.5, now=12.0, deadline=12.0) is None
    assert plan_retry(0.5, now=11.5, deadline=12.0, min_attempt_time=1.0) is None
