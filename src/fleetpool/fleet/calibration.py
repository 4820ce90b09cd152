"""Calibration: the same scenario by ``fleetpool demo`` (real processes) and on the virtual clock.

Strategy: the simulator earns trust only by reproducing the emulator, so the
comparison is a function of two run dicts (both have the report's shape), used
by the calibration test and by ``python -m benchmarks.simulate --calibrate``
for the README's table. The tolerances are the issue's: success rate within 5
points, peak server sessions and zombies at the end within 1, p50 latency
within 25%.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SUCCESS_POINTS = 5.0
PEAK_SESSIONS = 1
ZOMBIES = 1
P50_RATIO = 0.25
METRICS = ("success_pct", "peak_sessions", "zombies_end", "p50_ms")


def success_pct(summary: dict[str, Any]) -> float:
    """Share of invocations that succeeded, injected kills left out (percent)."""
    counted = summary["invocations"] - summary["injected_kills"]
    return 100.0 * summary["succeeded"] / counted if counted else 100.0


@dataclass(frozen=True)
class Row:
    strategy: str
    metric: str
    real: float | None
    simulated: float | None
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _figures(summary: dict[str, Any]) -> dict[str, float | None]:
    return {
        "success_pct": round(success_pct(summary), 1),
        "peak_sessions": summary["peak_server_connections"],
        "zombies_end": summary["zombies_end"],
        "p50_ms": summary["latency_ms"]["p50"],
    }


def within(metric: str, real: float | None, simulated: float | None) -> bool:
    if real is None or simulated is None:
        return real is None and simulated is None
    if metric == "success_pct":
        return abs(real - simulated) <= SUCCESS_POINTS
    if metric == "peak_sessions":
        return abs(real - simulated) <= PEAK_SESSIONS
    if metric == "zombies_end":
        return abs(real - simulated) <= ZOMBIES
    return abs(simulated - real) <= P50_RATIO * real


def compare(real_run: dict[str, Any], simulated_run: dict[str, Any]) -> list[Row]:
    """One row per strategy and metric present in both runs."""
    sim = {r["strategy"]: r["summary"] for r in simulated_run["strategies"]}
    rows = []
    for r in real_run["strategies"]:
        if r["strategy"] not in sim:
            continue
        a, b = _figures(r["summary"]), _figures(sim[r["strategy"]])
        for m in METRICS:
            rows.append(Row(r["strategy"], m, a[m], b[m], within(m, a[m], b[m])))
    return rows


def markdown(rows: list[Row]) -> str:
    """The README's table: a strategy per line, real / simulated per metric."""
    by: dict[str, dict[str, Row]] = {}
    for row in rows:
        by.setdefault(row.strategy, {})[row.metric] = row
    head = (
        "| strategy | success % | peak sessions | zombies at end | p50 ms |\n|---|---|---|---|---|"
    )
    lines = [head]
    for strategy, cells in by.items():

        def cell(m: str, cells: dict[str, Row] = cells) -> str:
            c = cells[m]
            mark = "" if c.ok else " ✗"
            return f"{_fmt(c.real)} / {_fmt(c.simulated)}{mark}"

        lines.append(f"| {strategy} | " + " | ".join(cell(m) for m in METRICS) + " |")
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:g}" if isinstance(v, int) or float(v).is_integer() else f"{v:.1f}"


__all__ = ["METRICS", "Row", "compare", "markdown", "success_pct", "within"]
