"""The reaper trigger on plain numbers, and the fleet-wide token on an in-memory budget."""

from __future__ import annotations

import uuid

import pytest

import fleetpool
from fleetpool.client.reaper import REAPER_FUNCTION, ReapToken, reap_check_due, should_reap


def test_a_check_is_due_only_once_its_time_has_come() -> None:
    assert reap_check_due(now=100.0, next_check=0.0)
    assert reap_check_due(now=100.0, next_check=100.0)
    assert not reap_check_due(now=99.9, next_check=100.0)


@pytest.mark.parametrize(
    ("used", "limit", "threshold", "expected"),
    [
        (80, 100, 0.8, True),
        (79, 100, 0.8, False),
        (100, 100, 1.0, True),
        (5, 0, 0.8, False),  # a server that reports no capacity is not "full"
        (0, 10, 0.8, False),
    ],
)
def test_should_reap_compares_utilisation_with_the_threshold(
    used: int, limit: int, threshold: float, expected: bool
) -> None:
    assert should_reap(used, limit, threshold) is expected


def budget(functions: dict[str, tuple[int, int]] | None = None) -> fleetpool.Budget:
    b = fleetpool.open_budget("memory://", f"reap-{uuid.uuid4().hex[:8]}")
    b.configure(limit=10, functions=functions)
    return b


def test_one_token_per_interval_when_the_store_enforces_it() -> None:
    b = budget({REAPER_FUNCTION: (0, 1)})
    assert ReapToken(b, "c1", 60.0).take("utilisation 9/10")
    assert not ReapToken(b, "c2", 60.0).take("utilisation 9/10")
    (token,) = [x for x in b.leases() if x.function == REAPER_FUNCTION]
    assert token.holder == "c1" and token.meta == {"reason": "utilisation 9/10"}
    assert token.expires_at - token.acquired_at == pytest.approx(60.0)


def test_without_a_cap_a_live_token_is_looked_at_first() -> None:
    b = budget()
    assert ReapToken(b, "c1", 60.0).take("x")
    assert not ReapToken(b, "c2", 60.0).take("x")
    assert sum(1 for x in b.leases() if x.function == REAPER_FUNCTION) == 1


def test_a_full_budget_refuses_the_token_without_waiting() -> None:
    b = budget()
    b.configure(limit=0)
    assert not ReapToken(b, "c1", 60.0).take("x")
