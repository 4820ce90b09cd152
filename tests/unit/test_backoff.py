"""Backoff strategies are pure and bounded; plan_retry respects the deadline."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fleetpool
from fleetpool.backoff import (
    DecorrelatedJitterBackoff,
    EqualJitterBackoff,
    ExponentialBackoff,
    FullJitterBackoff,
    SpreadJitterBackoff,
    backoff_named,
    equal_jitter,
    exponential,
    full_jitter,
    plan_retry,
    spread_jitter,
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


def test_pure_functions_on_plain_numbers() -> None:
    assert [exponential(n, 0.1, 1.0) for n in (0, 1, 2, 3, 4, 5)] == [0.1, 0.1, 0.2, 0.4, 0.8, 1.0]
    assert exponential(3, 0.02, 1.0, factor=1.5) == pytest.approx(0.045)
    assert exponential(10**9, 0.02, 1.0, factor=1.5) == 1.0  # no overflow
    assert full_jitter(0.8, 0.0) == 0.0
    assert full_jitter(0.8, 0.5) == 0.4
    assert equal_jitter(0.8, 0.0) == 0.4
    assert equal_jitter(0.8, 0.5) == pytest.approx(0.6)
    assert spread_jitter(0.8, 0.0) == 0.4
    assert spread_jitter(0.8, 0.5) == 0.8
    assert spread_jitter(0.8, 0.999) == pytest.approx(1.1992)


@given(attempt=st.integers(min_value=1, max_value=5000), rand=st.floats(0.0, 1.0, exclude_max=True))
def test_delay_is_compute_with_a_given_random_number(attempt: int, rand: float) -> None:
    # delay(attempt, rand) is the pure core: compute(attempt) only draws rand.
    for kind in (FullJitterBackoff, EqualJitterBackoff, SpreadJitterBackoff):
        b = kind(base=0.1, cap=2.0, rng=random.Random(1))
        assert b.compute(attempt) == b.delay(attempt, random.Random(1).random())
        ceiling = exponential(attempt, 0.1, 2.0)
        assert 0.0 <= b.delay(attempt, rand) < 1.5 * ceiling + 1e-12
    assert ExponentialBackoff(0.1, 2.0).delay(attempt, rand) == exponential(attempt, 0.1, 2.0)


def test_equal_jitter_reconnect_delay_from_attempt_and_random_number() -> None:
    # The shape a reconnect loop uses: attempt counted from 0, rand from its own source.
    b = EqualJitterBackoff(base=0.1, cap=2.0)
    assert b.delay(1, 0.0) == 0.05
    assert b.delay(2, 0.5) == pytest.approx(0.15)
    assert b.delay(50, 0.0) == 1.0
    assert all(0 < b.delay(n + 1, 0.5) <= 2.0 for n in range(0, 100))


def test_growth_factor_is_validated_and_keyword_only() -> None:
    assert SpreadJitterBackoff(0.02, 0.25, factor=1.5).delay(9, 0.5) == 0.25
    with pytest.raises(fleetpool.ConfigError, match="factor"):
        FullJitterBackoff(0.1, 1.0, factor=0.5)
    assert isinstance(backoff_named("spread"), SpreadJitterBackoff)
