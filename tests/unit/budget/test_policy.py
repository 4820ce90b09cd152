"""Property tests of the pure admission rule (fleetpool.budget._policy.admit)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpool import ConfigError
from fleetpool.budget import BudgetConfig, FunctionLimits, admit, validate_config
from fleetpool.budget._policy import AT_FUNCTION_MAX, BUDGET_FULL, GRANTED_RESERVE
from tests.cases.budget import NAMES, configs

in_use_maps = st.dictionaries(st.sampled_from(NAMES), st.integers(0, 8), max_size=4)
waiter_lists = st.lists(st.sampled_from(NAMES), max_size=6)


@given(configs(), in_use_maps, st.sampled_from(NAMES), waiter_lists)
def test_grant_never_breaks_limit_or_cap(
    config: BudgetConfig, in_use: dict[str, int], fn: str, ahead: list[str]
) -> None:
    d = admit(config, in_use, fn, ahead)
    if d.granted:
        assert sum(in_use.values()) < config.limit
        assert in_use.get(fn, 0) < config.max_for(fn)


@given(configs(), in_use_maps, st.sampled_from(NAMES), waiter_lists)
def test_below_min_is_never_refused_while_room(
    config: BudgetConfig, in_use: dict[str, int], fn: str, ahead: list[str]
) -> None:
    d = admit(config, in_use, fn, ahead)
    below_min = in_use.get(fn, 0) < config.limits_for(fn).min
    if below_min and sum(in_use.values()) < config.limit and in_use.get(fn, 0) < config.max_for(fn):
        assert d.granted and d.reason == GRANTED_RESERVE


@given(configs(), in_use_maps, st.sampled_from(NAMES), waiter_lists)
def test_at_max_always_waits(
    config: BudgetConfig, in_use: dict[str, int], fn: str, ahead: list[str]
) -> None:
    if in_use.get(fn, 0) >= config.max_for(fn):
        assert admit(config, in_use, fn, ahead).reason == AT_FUNCTION_MAX


@given(configs(), in_use_maps, st.sampled_from(NAMES))
def test_grants_above_min_leave_other_reserves_intact(
    config: BudgetConfig, in_use: dict[str, int], fn: str
) -> None:
    d = admit(config, in_use, fn)
    if d.granted and d.reason != GRANTED_RESERVE:
        reserved = sum(
            max(0, fl.min - in_use.get(name, 0))
            for name, fl in config.functions.items()
            if name != fn
        )
        assert sum(in_use.values()) + 1 + reserved <= config.limit


@given(configs(), in_use_maps, st.sampled_from(NAMES), waiter_lists)
def test_waiters_ahead_only_ever_make_it_stricter(
    config: BudgetConfig, in_use: dict[str, int], fn: str, ahead: list[str]
) -> None:
    with_queue = admit(config, in_use, fn, ahead)
    without = admit(config, in_use, fn, [])
    if with_queue.granted:
        assert without.granted


@settings(max_examples=200)
@given(configs(), st.lists(st.tuples(st.booleans(), st.sampled_from(NAMES)), max_size=60))
def test_random_histories_keep_every_invariant(
    config: BudgetConfig, ops: list[tuple[bool, str]]
) -> None:
    in_use: dict[str, int] = {}
    for acquire, fn in ops:
        if acquire:
            if admit(config, in_use, fn).granted:
                in_use[fn] = in_use.get(fn, 0) + 1
        elif in_use.get(fn):
            in_use[fn] -= 1
        assert sum(in_use.values()) <= config.limit
        for name, count in in_use.items():
            assert count <= config.max_for(name)


def test_full_budget_reason() -> None:
    config = BudgetConfig(2)
    assert admit(config, {"a": 2}, "b").reason == BUDGET_FULL


def test_a_capped_waiter_does_not_block_others() -> None:
    config = BudgetConfig(3, {"hot": FunctionLimits(0, 1)})
    # "hot" is at its max, so its queued waiters cannot use capacity: "cold" goes first.
    assert admit(config, {"hot": 1}, "cold", ["hot", "hot", "hot"]).granted
    # An eligible waiter ahead does hold its place.
    assert not admit(config, {"hot": 1, "x": 1}, "cold", ["x"]).granted


@pytest.mark.parametrize(
    ("limit", "functions", "message"),
    [
        (-1, None, "limit must be an integer >= 0"),
        ("10", None, "limit must be an integer"),
        (True, None, "limit must be an integer"),
        (5, {"api": (3, 2)}, "max for function 'api'"),
        (5, {"api": (-1, 2)}, "min for function 'api'"),
        (5, {"api": 3}, "must be (min, max)"),
        (5, {"a": (3, None), "b": (3, None)}, "reserves add up to 6"),
        (5, {"": (0, 1)}, "non-empty strings"),
    ],
)
def test_bad_configs_say_what_is_wrong(limit: object, functions: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_config(limit, functions)  # type: ignore[arg-type]


def test_config_accepts_tuples_dicts_and_limits() -> None:
    config = validate_config(10, {"a": (1, 5), "b": {"min": 2}, "c": FunctionLimits(0, None)})
    assert config.functions["a"] == FunctionLimits(1, 5)
    assert config.functions["b"] == FunctionLimits(2, None)
    assert config.max_for("c") == 10


def test_hand_off_only_when_free_capacity_and_promises_cannot_serve_the_waiters() -> None:
    from fleetpool.budget._policy import should_hand_off

    assert not should_hand_off(limit=4, in_use=4, waiting=0, offered=0)
    assert should_hand_off(limit=4, in_use=4, waiting=1, offered=0)
    # One promise per waiter is enough.
    assert not should_hand_off(limit=4, in_use=4, waiting=1, offered=1)
    assert should_hand_off(limit=4, in_use=4, waiting=3, offered=2)
    # Free capacity serves waiters without anyone's lease.
    assert not should_hand_off(limit=4, in_use=3, waiting=1, offered=0)
    assert should_hand_off(limit=4, in_use=3, waiting=2, offered=0)
    # Over the limit (after a lowered limit) counts as no free capacity.
    assert should_hand_off(limit=2, in_use=3, waiting=1, offered=0)


def test_connect_slots_follow_the_rate_after_the_burst() -> None:
    from fleetpool.budget._policy import connect_slot

    tat, delays = 0.0, []
    for _ in range(5):
        delay, tat = connect_slot(tat, now=100.0, rate=10, burst=2, within=10)
        assert delay is not None
        delays.append(round(delay, 6))
    # Two at once, then one every 1/rate seconds.
    assert delays == [0.0, 0.0, 0.1, 0.2, 0.3]
    # A caller that cannot wait that long reserves nothing.
    assert connect_slot(tat, now=100.0, rate=10, burst=2, within=0.35) == (None, tat)
    # After a quiet spell the schedule starts from now again.
    assert connect_slot(tat, now=200.0, rate=10, burst=2, within=0) == (0.0, 200.1)


def test_connect_slots_never_exceed_burst_plus_rate_times_window() -> None:
    from fleetpool.budget._policy import connect_slot

    rate, burst = 7.0, 3
    tat, starts = 0.0, []
    for i in range(200):
        now = 50.0 + i * 0.01  # callers arrive faster than the rate
        delay, tat = connect_slot(tat, now, rate, burst, within=1e9)
        assert delay is not None
        starts.append(now + delay)
    for t in starts:
        inside = sum(1 for s in starts if t <= s < t + 1.0)
        assert inside <= burst + rate


def test_auto_limit_takes_the_headroom_of_what_others_leave() -> None:
    from fleetpool.budget._policy import auto_limit

    assert auto_limit(usable=100, others=10, headroom=0.8) == 72
    assert auto_limit(usable=20, others=0, headroom=1.0) == 20
    assert auto_limit(usable=20, others=25, headroom=0.9) == 0


def test_resize_scales_function_limits_as_shares_of_the_configured_base() -> None:
    from fleetpool.budget._policy import BudgetConfig, FunctionLimits, resize

    base = BudgetConfig(10, {"api": FunctionLimits(2, 6), "jobs": FunctionLimits(1, None)})
    small = resize(base, 5)
    assert small.limit == 5
    assert small.functions == {"api": FunctionLimits(1, 3), "jobs": FunctionLimits(0, None)}
    # Down then up again comes back exactly: shares of the base, no drift.
    again = resize(resize(small, 3), 10)
    assert again.functions == base.functions and again.base == base
    # The stores keep the base with the config.
    assert BudgetConfig.from_json(small.to_json()).base == base


def test_parse_auto_limit() -> None:
    import pytest

    from fleetpool.budget._policy import parse_auto_limit
    from fleetpool.errors import ConfigError

    assert parse_auto_limit("auto") == 0.9
    assert parse_auto_limit("auto:80%") == 0.8
    assert parse_auto_limit(12) is None
    for bad in ("auto:0%", "auto:101%", "auto:x%", "80%", 1.5):
        with pytest.raises(ConfigError, match="auto"):
            parse_auto_limit(bad)
