"""Traffic profiles: seeded Poisson arrivals, the same for every strategy."""

from __future__ import annotations

import random

import pytest

from fleetpool.fleet.traffic import Phase, Workload, phase_arrivals, schedule


def test_schedule_is_deterministic_per_seed() -> None:
    phases = [Phase("steady", 10.0, rate=5.0)]
    a = schedule(phases, Workload(), seed=3)
    b = schedule(phases, Workload(), seed=3)
    c = schedule(phases, Workload(), seed=4)
    assert [x.at for x in a] == [x.at for x in b]
    assert [x.at for x in a] != [x.at for x in c]


def test_steady_rate_is_about_right() -> None:
    times = phase_arrivals(Phase("steady", 200.0, rate=5.0), 0.0, random.Random(1))
    assert 900 < len(times) < 1100
    assert all(0 <= t < 200 for t in times)


def test_spike_concentrates_arrivals_in_the_peak() -> None:
    p = Phase("spike", 10.0, base_rate=1.0, peak_rate=200.0, peak_at=3.0, peak_length=0.5)
    times = phase_arrivals(p, 0.0, random.Random(2))
    in_peak = [t for t in times if 3.0 <= t < 3.5]
    assert 70 < len(in_peak) < 130
    assert len(times) - len(in_peak) < 25


def test_ramp_and_step_rates() -> None:
    ramp = Phase("ramp", 10.0, from_rate=0.0, to_rate=10.0)
    assert ramp.rate_at(0.0) == 0.0
    assert ramp.rate_at(5.0) == pytest.approx(5.0)
    step = Phase("step", 6.0, rates=(1.0, 2.0, 3.0))
    assert [step.rate_at(t) for t in (0.5, 2.5, 5.9)] == [1.0, 2.0, 3.0]
    assert step.rate_at(6.0) == 0.0


def test_phases_follow_each_other() -> None:
    phases = [
        Phase("steady", 2.0, rate=20.0),
        Phase("steady", 2.0, rate=0.0),
        Phase("harness", 1.0, iterations=7, payload={"k": 1}),
    ]
    arr = schedule(phases, Workload(), seed=1)
    assert not [a for a in arr if 2.0 <= a.at < 4.0]
    harness = [a for a in arr if a.at >= 4.0]
    assert len(harness) == 7
    assert all(a.event["k"] == 1 for a in harness)
    assert [a.index for a in arr] == list(range(len(arr)))


def test_slow_invocations_are_marked_and_bounded_in_time() -> None:
    wl = Workload(think=0.1, slow_fraction=0.5, slow_think=30.0, slow_until=5.0)
    arr = schedule([Phase("steady", 10.0, rate=20.0)], wl, seed=5)
    slow = [a for a in arr if a.slow]
    assert slow and all(a.at < 5.0 for a in slow)
    assert all(a.event["think"] == 30.0 for a in slow)
    assert all(a.event["think"] == 0.1 for a in arr if not a.slow)
