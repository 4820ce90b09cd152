"""``fleetpool plan``: search a scenario's settings on the virtual clock and recommend some.

Strategy: every candidate is one simulator run of the scenario with the
settings replaced (:func:`fleetpool.fleet.simulator.simulate_strategy`), so the
outcome of a recommendation is exactly what replaying it in the simulator
gives. For the fleetpool client the budget limit is searched by bisection for
each lease TTL (success grows with the limit; the smallest limit that meets the
target leaves the most headroom), for the proxy the pool size. Every point
tried is kept: that is the frontier the report shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError
from .scenario import Scenario
from .simulator import simulate_strategy

#: Strategies ``plan`` can tune, and the setting it searches for each.
TUNABLE = {"fleetpool": "budget limit", "proxy": "pool size"}
TTLS = (1.0, 2.0, 3.0, 5.0, 10.0)


@dataclass(frozen=True)
class Target:
    """What a recommendation must achieve."""

    success: float = 0.99  # share of invocations that succeed (injected kills left out)
    p99_ms: float | None = None  # p99 latency of successful invocations, at most


@dataclass(frozen=True)
class Point:
    """One candidate and its simulated outcome."""

    limit: int
    lease_ttl: float
    max_wait: float
    success: float
    p50_ms: float | None
    p99_ms: float | None
    peak_sessions: int
    headroom: int  # the database's connections left at the peak
    zombies_end: int

    def meets(self, target: Target) -> bool:
        if self.success < target.success:
            return False
        return target.p99_ms is None or (self.p99_ms is not None and self.p99_ms <= target.p99_ms)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def outcome(scenario: Scenario, strategy: str, limit: int) -> Point:
    """Simulate ``strategy`` with ``limit`` connections for the fleet."""
    result = simulate_strategy(scenario, strategy, keep_invocations=0)
    s = result["summary"]
    counted = s["invocations"] - s["injected_kills"]
    return Point(
        limit=limit,
        lease_ttl=scenario.lease_ttl,
        max_wait=scenario.max_wait,
        success=round(s["succeeded"] / counted, 4) if counted else 1.0,
        p50_ms=s["latency_ms"]["p50"],
        p99_ms=s["latency_ms"]["p99"],
        peak_sessions=s["peak_server_connections"],
        headroom=scenario.max_connections - s["peak_server_connections"],
        zombies_end=s["zombies_end"],
    )


def plan(
    scenario: Scenario,
    strategy: str = "fleetpool",
    target: Target | None = None,
    *,
    ttls: tuple[float, ...] | None = None,
    on_point: Callable[[Point], None] | None = None,
) -> dict[str, Any]:
    """Search settings for ``strategy``; the recommendation and every point tried.

    The database's ``max_connections`` is the ceiling: no limit above it is tried.
    """
    if strategy not in TUNABLE:
        raise ConfigError(f"plan tunes {', '.join(TUNABLE)}; got strategy {strategy!r}")
    target = target or Target()
    if not 0 < target.success <= 1:
        raise ConfigError(f"the success target must be in (0, 1], got {target.success}")
    ceiling = scenario.max_connections
    if strategy == "fleetpool":
        ttls = ttls or tuple(sorted({*TTLS, scenario.lease_ttl}))
    else:
        ttls = (scenario.lease_ttl,)  # the proxy holds no lease
    points: list[Point] = []
    seen: dict[tuple[int, float], Point] = {}

    def at(limit: int, ttl: float) -> Point:
        key = (limit, ttl)
        if key not in seen:
            sc = replace(scenario, limit=limit, max_connections=ceiling, lease_ttl=ttl)
            point = outcome(sc, strategy, limit)
            point = replace(point, headroom=ceiling - point.peak_sessions)
            seen[key] = point
            points.append(point)
            if on_point is not None:
                on_point(point)
        return seen[key]

    best: Point | None = None
    for ttl in ttls:
        lo, hi = 1, ceiling
        if not at(hi, ttl).meets(target):
            continue  # not even the whole database meets the target with this TTL
        while lo < hi:  # the smallest limit that meets the target
            mid = (lo + hi) // 2
            if at(mid, ttl).meets(target):
                hi = mid
            else:
                lo = mid + 1
        found = at(hi, ttl)
        if best is None or (found.limit, found.p99_ms or 0.0) < (best.limit, best.p99_ms or 0.0):
            best = found
    return {
        "strategy": strategy,
        "setting": TUNABLE[strategy],
        "target": {"success": target.success, "p99_ms": target.p99_ms},
        "max_connections": ceiling,
        "recommended": best.as_dict() if best is not None else None,
        "frontier": [p.as_dict() for p in sorted(points, key=lambda p: (p.lease_ttl, p.limit))],
    }


__all__ = ["TUNABLE", "Point", "Target", "outcome", "plan"]
