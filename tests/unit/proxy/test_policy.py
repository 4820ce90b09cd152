from __future__ import annotations

import math

from fleetpool.proxy.policy import (
    IdleInfo,
    effective_pool_size,
    lifetime_deadline,
    plan_idle,
    retry_delay,
    reusable,
    split_pool_size,
)


def info(
    created: float = 0, idle_since: float = 0, expires: float = math.inf, checked: float = 0
) -> IdleInfo:
    return IdleInfo(created, idle_since, expires, checked)


def test_lifetime_jitter_shortens_only() -> None:
    assert lifetime_deadline(100, 1000, 0.1, 0.0) == 1100
    assert lifetime_deadline(100, 1000, 0.1, 0.999) > 1000
    assert lifetime_deadline(100, 0, 0.1, 0.5) == math.inf
    assert not reusable(info(expires=10), now=10)
    assert reusable(info(expires=10), now=9.9)


def test_plan_idle_closes_expired_and_idle_but_keeps_min_idle() -> None:
    idle = [info(idle_since=0), info(idle_since=0), info(idle_since=50, expires=60)]
    close, check, to_open = plan_idle(
        idle, 100, total=3, min_idle=1, idle_timeout=30, max_size=5, health_check_interval=0
    )
    # the expired one goes; of the two long-idle ones only one may go (min_idle=1)
    assert close == [0, 2]
    assert len(close) == 2 and to_open == 0 and check == []


def test_plan_idle_opens_up_to_min_idle_within_max_size() -> None:
    close, _, to_open = plan_idle(
        [], 0, total=4, min_idle=3, idle_timeout=0, max_size=5, health_check_interval=0
    )
    assert close == [] and to_open == 1


def test_plan_idle_health_checks() -> None:
    idle = [info(checked=0), info(checked=95)]
    _, check, _ = plan_idle(
        idle, 100, total=2, min_idle=0, idle_timeout=0, max_size=5, health_check_interval=10
    )
    assert check == [0]


def test_sizes_and_backoff() -> None:
    assert effective_pool_size(20, None, 100) == 20
    assert effective_pool_size(20, 50, 100) == 50
    assert sum(split_pool_size(20, 3, i) for i in range(3)) == 20
    assert split_pool_size(1, 4, 3) == 1
    for attempt in range(40):
        assert 0 < retry_delay(attempt, 0.5) <= 2.0
