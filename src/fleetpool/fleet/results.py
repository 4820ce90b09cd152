"""Turning invocation records and observer samples into the figures a run reports.

Strategy: pure functions over plain data (records and sample dicts), so the JSON,
the terminal table and the HTML report all read the same numbers and tests need
no processes. Latency percentiles are over successful invocations (a refused
invocation fails fast and would flatter a strategy); failures are counted by
reason. Invocations the scenario made outlive the timeout ("slow") are reported
as injected kills, not as the strategy's failures.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from .emulator import NO_CONNECTIONS_LEFT, InvocationRecord


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation; None when empty."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def injected(rec: InvocationRecord) -> bool:
    """The scenario made this invocation outlive its timeout, and it did."""
    return rec.slow and rec.reason == "timeout"


def summarize(
    records: Sequence[InvocationRecord],
    samples: Sequence[dict[str, Any]],
    *,
    limit: int,
    counter_limit: int | None = None,
) -> dict[str, Any]:
    ok = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok and not injected(r)]
    lat = [r.latency_ms for r in ok]
    reasons = Counter(r.reason for r in records if not r.ok)
    last = samples[-1] if samples else {}
    out: dict[str, Any] = {
        "invocations": len(records),
        "succeeded": len(ok),
        "failed": len(failed),
        "failed_by_reason": dict(sorted(reasons.items())),
        "injected_kills": sum(1 for r in records if injected(r)),
        "no_connections_left": sum(1 for r in records if r.reason in NO_CONNECTIONS_LEFT),
        "throttled": reasons.get("throttled", 0),
        "cold_starts": sum(1 for r in records if r.cold),
        "containers": len({r.container for r in records if r.container}),
        "connects": sum(r.connects for r in records),
        "latency_ms": {
            "p50": _round(percentile(lat, 50)),
            "p95": _round(percentile(lat, 95)),
            "p99": _round(percentile(lat, 99)),
            "max": _round(max(lat) if lat else None),
        },
        "limit": limit,
        "peak_server_connections": max((s["server"]["total"] for s in samples), default=0),
        "peak_fleet_connections": max((s["server"]["fleet"] for s in samples), default=0),
        "zombies_end": int(last.get("zombies", 0)),
        "peak_zombies": max((s.get("zombies", 0) for s in samples), default=0),
        "server_connections_end": int(last.get("server", {}).get("total", 0)),
    }
    if counter_limit is not None and last.get("counter") is not None:
        out["counter_end"] = last["counter"]
        out["counter_leaked"] = counter_limit - int(last["counter"])
    if last.get("budget"):
        out["budget_end"] = last["budget"]
    return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def series(
    records: Iterable[InvocationRecord],
    samples: Sequence[dict[str, Any]],
    *,
    bucket: float = 1.0,
) -> dict[str, Any]:
    """Time series for the charts: the observer's samples plus per-bucket errors and latency."""
    recs = list(records)
    t = [s["t"] for s in samples]
    out: dict[str, Any] = {
        "t": t,
        "server_total": [s["server"]["total"] for s in samples],
        "server_fleet": [s["server"]["fleet"] for s in samples],
        "active": [s["server"]["by_state"].get("active", 0) for s in samples],
        "idle": [s["server"]["by_state"].get("idle", 0) for s in samples],
        "remaining": [s["remaining"] for s in samples],
        "held_running": [s["server"]["owners"]["running"] for s in samples],
        "held_frozen": [s["server"]["owners"]["frozen"] for s in samples],
        "held_other": [s["server"]["owners"]["other"] for s in samples],
        "zombies": [s.get("zombies", 0) for s in samples],
        "frozen": [s["containers"].get("frozen", 0) for s in samples],
        "running": [
            s["containers"].get("running", 0) + s["containers"].get("starting", 0) for s in samples
        ],
        "dead": [s["containers"].get("dead", 0) for s in samples],
    }
    if any(s.get("budget") for s in samples):
        out["budget_remaining"] = [(s.get("budget") or {}).get("remaining") for s in samples]
    if any(s.get("counter") is not None for s in samples):
        out["counter_remaining"] = [s.get("counter") for s in samples]
    # Errors per observer interval, placed at each sample's time (the seed's right axis).
    ncl: list[int] = [0] * len(t)
    fails: list[int] = [0] * len(t)
    for r in recs:
        if r.ok:
            continue
        i = _index(t, r.end)
        if i is None:
            continue
        fails[i] += 1
        if r.reason in NO_CONNECTIONS_LEFT:
            ncl[i] += 1
    out["no_connections_left"] = ncl
    out["failures"] = fails
    # Latency percentiles of successful invocations, by completion time.
    end = max([r.end for r in recs] + t + [0.0])
    n = int(end // bucket) + 1
    buckets: list[list[float]] = [[] for _ in range(n)]
    for r in recs:
        if r.ok:
            buckets[min(n - 1, int(r.end // bucket))].append(r.latency_ms)
    out["latency"] = {
        "t": [round((i + 0.5) * bucket, 3) for i in range(n)],
        "p50": [_round(percentile(b, 50)) for b in buckets],
        "p95": [_round(percentile(b, 95)) for b in buckets],
        "p99": [_round(percentile(b, 99)) for b in buckets],
        "count": [len(b) for b in buckets],
    }
    return out


def _index(t: Sequence[float], at: float) -> int | None:
    """Index of the first sample at or after ``at`` (the interval the event falls in)."""
    if not t:
        return None
    lo, hi = 0, len(t) - 1
    if at >= t[hi]:
        return hi
    while lo < hi:
        mid = (lo + hi) // 2
        if t[mid] < at:
            lo = mid + 1
        else:
            hi = mid
    return lo
