"""Figures from records and samples: percentiles, failures by reason, series."""

from __future__ import annotations

import pytest

from fleetpool.fleet.emulator import InvocationRecord
from fleetpool.fleet.results import percentile, series, summarize


def rec(i: int, ok: bool, reason: str, end: float, *, slow: bool = False) -> InvocationRecord:
    return InvocationRecord(
        i,
        0.0,
        0.0,
        end,
        ok,
        reason,
        cold=i == 0,
        container=f"c{i % 2}",
        connects=1 if ok else 0,
        slow=slow,
    )


def sample(t: float, total: int, zombies: int = 0) -> dict[str, object]:
    return {
        "t": t,
        "server": {
            "total": total,
            "fleet": total,
            "other": 0,
            "by_state": {"idle": total},
            "owners": {"running": total, "frozen": 0, "zombie": zombies, "other": 0},
        },
        "remaining": 10 - total,
        "zombies": zombies,
        "containers": {"starting": 0, "running": 1, "frozen": 0, "dead": 0},
    }


def test_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile(list(range(101)), 95) == pytest.approx(95.0)


def test_summary_separates_injected_kills_from_failures() -> None:
    records = [
        rec(0, True, "ok", 0.5),
        rec(1, True, "ok", 1.0),
        rec(2, False, "too_many_connections", 0.1),
        rec(3, False, "no_connections_left", 0.2),
        rec(4, False, "timeout", 3.0, slow=True),
        rec(5, False, "timeout", 3.0),
    ]
    s = summarize(records, [sample(0.25, 4), sample(0.5, 11, zombies=2)], limit=10)
    assert s["invocations"] == 6
    assert s["succeeded"] == 2
    assert s["failed"] == 3  # the slow invocation's timeout is injected, the other is not
    assert s["injected_kills"] == 1
    assert s["no_connections_left"] == 2
    assert s["failed_by_reason"] == {
        "no_connections_left": 1,
        "timeout": 2,
        "too_many_connections": 1,
    }
    assert s["peak_server_connections"] == 11
    assert s["zombies_end"] == 2
    assert s["latency_ms"]["p50"] == pytest.approx(750.0)
    assert s["connects"] == 2


def test_counter_leak_is_limit_minus_final_value() -> None:
    last = sample(1.0, 0)
    last["counter"] = 7
    s = summarize([], [last], limit=10, counter_limit=10)
    assert s["counter_leaked"] == 3


def test_series_bins_errors_into_the_sample_interval() -> None:
    records = [
        rec(0, False, "too_many_connections", 0.3),
        rec(1, False, "throttled", 0.3),
        rec(2, True, "ok", 0.6),
    ]
    out = series(records, [sample(0.25, 1), sample(0.5, 2), sample(0.75, 3)])
    assert out["no_connections_left"] == [0, 1, 0]
    assert out["failures"] == [0, 2, 0]
    assert out["remaining"] == [9, 8, 7]
    assert out["latency"]["count"][0] == 1
