"""Small SVG charts for the report, generated in Python: no JavaScript, no network.

Strategy: a chart is a time axis, a left value axis, an optional right axis, and
series drawn as lines, step areas or bars; horizontal reference lines mark limits.
Numbers become coordinates here and nowhere else, so the report module only
chooses what to plot. Output is a self-contained ``<svg>`` string.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Literal

Kind = Literal["line", "area", "bars", "dots"]


@dataclass
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float | None]
    color: str
    kind: Kind = "line"
    axis: Literal["left", "right"] = "left"
    width: float = 2.0
    dash: str = ""
    opacity: float = 0.25  # fill opacity of an area


@dataclass
class HLine:
    y: float
    label: str
    color: str = "#d62728"
    dash: str = "6 4"


@dataclass
class Chart:
    title: str
    series: list[Series]
    x_max: float
    y_label: str = ""
    y2_label: str = ""
    hlines: list[HLine] = field(default_factory=list)
    width: int = 460
    height: int = 240
    y_min: float = 0.0
    y_max: float | None = None
    y2_max: float | None = None
    x_label: str = "seconds"
    spans: list[tuple[float, float, str]] = field(default_factory=list)  # shaded x ranges


def nice_ticks(hi: float, n: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``hi``."""
    if hi <= 0 or not math.isfinite(hi):
        return [0.0, 1.0]
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    count = math.ceil(hi / step - 1e-9)
    return [round(i * step, 10) for i in range(count + 1)]


def _fmt(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def render(chart: Chart) -> str:
    w, h = chart.width, chart.height
    has_right = any(s.axis == "right" for s in chart.series)
    left, right, top, bottom = 44, 44 if has_right else 14, 44, 34
    pw, ph = w - left - right, h - top - bottom
    xmax = max(chart.x_max, 1e-9)

    def hi_of(axis: str, explicit: float | None) -> float:
        if explicit is not None:
            return explicit
        vals = [v for s in chart.series if s.axis == axis for v in s.y if v is not None]
        if axis == "left":
            vals += [hl.y for hl in chart.hlines]
        return max(vals, default=1.0) * 1.08 or 1.0

    yticks = nice_ticks(hi_of("left", chart.y_max))
    ymax = yticks[-1] if chart.y_max is None else chart.y_max
    y2ticks = nice_ticks(hi_of("right", chart.y2_max))
    y2max = y2ticks[-1]
    xticks = nice_ticks(xmax, 6)

    def sx(x: float) -> float:
        return left + pw * min(max(x, 0.0), xmax) / xmax

    def sy(y: float, axis: str = "left") -> float:
        lo, hi = (chart.y_min, ymax) if axis == "left" else (0.0, y2max)
        span = (hi - lo) or 1.0
        return top + ph - ph * (min(max(y, lo), hi) - lo) / span

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {w} {h}" '
        f'width="{w}" height="{h}" preserveAspectRatio="xMinYMin meet" role="img" '
        f'aria-label="{escape(chart.title)}">',
        f'<text x="{left}" y="16" class="ct">{escape(chart.title)}</text>',
    ]
    for x0, x1, color in chart.spans:
        out.append(
            f'<rect x="{sx(x0):.1f}" y="{top}" width="{max(1.0, sx(x1) - sx(x0)):.1f}" '
            f'height="{ph}" fill="{color}"/>'
        )
    for t in yticks:
        y = sy(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(
            f'<text x="{left - 5}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_fmt(t)}</text>'
        )
    if any(s.axis == "right" for s in chart.series):
        for t in y2ticks:
            out.append(
                f'<text x="{left + pw + 5}" y="{sy(t, "right") + 4:.1f}" class="tick">'
                f"{_fmt(t)}</text>"
            )
    for t in xticks:
        if t > xmax * 1.001:
            continue
        x = sx(t)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" class="axis"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{top + ph + 16}" class="tick" text-anchor="middle">'
            f"{_fmt(t)}</text>"
        )
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>')
    out.append(
        f'<text x="{left + pw}" y="{h - 4}" class="tick" text-anchor="end">'
        f"{escape(chart.x_label)}</text>"
    )
    if chart.y_label:
        out.append(
            f'<text x="10" y="{top + ph / 2:.0f}" class="tick" text-anchor="middle" '
            f'transform="rotate(-90 10 {top + ph / 2:.0f})">{escape(chart.y_label)}</text>'
        )
    if chart.y2_label:
        x2 = w - 6
        out.append(
            f'<text x="{x2}" y="{top + ph / 2:.0f}" class="tick" text-anchor="middle" '
            f'transform="rotate(90 {x2} {top + ph / 2:.0f})">'
            f"{escape(chart.y2_label)}</text>"
        )
    for s in chart.series:
        out.append(_series(s, sx, sy, top + ph, xmax))
    for hl in chart.hlines:
        y = sy(hl.y)
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{hl.color}" stroke-width="1.5" stroke-dasharray="{hl.dash}"/>'
        )
        out.append(
            f'<text x="{left + pw - 2}" y="{y - 4:.1f}" class="tick" text-anchor="end" '
            f'fill="{hl.color}">{escape(hl.label)}</text>'
        )
    # Legend, on its own line under the title.
    lx: float = left
    for s in chart.series:
        mark_h = 3 if s.kind in ("line", "dots") else 9
        out.append(
            f'<rect x="{lx:.0f}" y="{28 - mark_h / 2:.1f}" width="12" height="{mark_h}" '
            f'fill="{s.color}"/>'
            f'<text x="{lx + 16:.0f}" y="32" class="lg">{escape(s.label)}</text>'
        )
        lx += 6.0 * len(s.label) + 30
    out.append("</svg>")
    return "".join(out)


def _series(
    s: Series,
    fx: Callable[[float], float],
    fy: Callable[[float, str], float],
    base: float,
    xmax: float,
) -> str:
    pts = [(x, y) for x, y in zip(s.x, s.y, strict=False) if y is not None and x <= xmax * 1.001]
    if not pts:
        return ""
    if s.kind == "bars":
        bw = max(1.5, (fx(pts[1][0]) - fx(pts[0][0])) * 0.8) if len(pts) > 1 else 3.0
        rects = [
            f'<rect x="{fx(x) - bw / 2:.1f}" y="{fy(y, s.axis):.1f}" width="{bw:.1f}" '
            f'height="{max(0.0, base - fy(y, s.axis)):.1f}"/>'
            for x, y in pts
            if y > 0
        ]
        return f'<g fill="{s.color}" opacity="0.85">{"".join(rects)}</g>'
    if s.kind == "dots":
        dots = [f'<circle cx="{fx(x):.1f}" cy="{fy(y, s.axis):.1f}" r="2"/>' for x, y in pts]
        return f'<g fill="{s.color}">{"".join(dots)}</g>'
    coords = [f"{fx(x):.1f},{fy(y, s.axis):.1f}" for x, y in pts]
    d = "M" + " L".join(coords)
    dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
    if s.kind == "area":
        x0 = fx(pts[0][0])
        x1 = fx(pts[-1][0])
        area = f"{d} L{x1:.1f},{base:.1f} L{x0:.1f},{base:.1f} Z"
        return (
            f'<path d="{area}" fill="{s.color}" fill-opacity="{s.opacity}" stroke="none"/>'
            f'<path d="{d}" fill="none" stroke="{s.color}" stroke-width="{s.width}"{dash}/>'
        )
    return (
        f'<path d="{d}" fill="none" stroke="{s.color}" stroke-width="{s.width}" '
        f'stroke-linejoin="round"{dash}/>'
    )
