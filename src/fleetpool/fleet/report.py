"""The run's HTML report: one self-contained file a person reads at a glance.

Strategy: the report reads only the run's JSON dict, so it can be rebuilt from a
saved ``fleetpool-report.json``. It opens with a verdict per strategy and the
summary table, then a grid with one small chart per strategy (server connections
against the limit, zombies shaded), then a section per strategy with the AWS
sample's chart (remaining connections and "no connections left" errors over
time), server connections by state, and latency percentiles. Charts are inline
SVG generated in Python; the page has no script and loads nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from html import escape
from pathlib import Path
from typing import Any

from .svg import Chart, HLine, Series, render

BLUE = "#1f77b4"
ORANGE = "#ff7f0e"
RED = "#d62728"
GREEN = "#2ca02c"
PURPLE = "#9467bd"
GREY = "#7f7f7f"
TEAL = "#17becf"

CSS = """
body{font:14px/1.45 -apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:0;
 color:#1b1f24;background:#fff}
main{max-width:1460px;margin:0 auto;padding:18px 24px 40px}
h1{font-size:22px;margin:0 0 2px}h2{font-size:18px;margin:28px 0 6px;border-top:1px solid #ddd;
 padding-top:14px}h3{font-size:15px;margin:14px 0 4px}
.sub{color:#57606a;margin:0 0 12px}
table{border-collapse:collapse;margin:8px 0 4px;font-variant-numeric:tabular-nums}
th,td{padding:5px 9px;border-bottom:1px solid #e5e7eb;text-align:right;white-space:nowrap}
th{background:#f6f8fa;font-weight:600;font-size:12.5px}
td:first-child,th:first-child{text-align:left}
td.bad{background:#fde8e8;color:#8a1c1c;font-weight:600}
td.good{background:#e7f6ea;color:#17622b;font-weight:600}
td.warn{background:#fff4d6;color:#7a5200}
.verdict{font-weight:600}
.multi{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:6px 18px}
.pair{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:6px 18px;max-width:1200px}
svg.chart{background:#fff;width:100%;height:auto}
td.wrap{white-space:normal;text-align:left;min-width:160px}
.scroll{overflow-x:auto;max-width:100%}
.ct{font-size:13px;font-weight:600;fill:#1b1f24}
.tick{font-size:10.5px;fill:#57606a}.lg{font-size:11px;fill:#1b1f24}
line.grid{stroke:#eceff1}line.axis{stroke:#9aa1a9}
.note{color:#57606a;font-size:12.5px;max-width:1100px}
code{background:#f6f8fa;padding:1px 4px;border-radius:3px}
"""


def _cell(value: Any, cls: str = "") -> str:
    text = "-" if value is None else escape(str(value))
    return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"


def verdict(s: dict[str, Any]) -> tuple[str, str]:
    """A one-line judgement of a strategy's summary and its CSS class."""
    problems = []
    if s["failed"]:
        problems.append(f"{s['failed']} failed")
    if s["peak_server_connections"] > s["limit"]:
        problems.append("over the limit")
    if s["zombies_end"]:
        problems.append(f"{s['zombies_end']} zombies left")
    if s.get("counter_leaked"):
        problems.append(f"counter leaked {s['counter_leaked']}")
    if not problems:
        return "all invocations served, within the limit, no zombies", "good"
    return ", ".join(problems), "bad"


def summary_table(run: dict[str, Any]) -> str:
    head = (
        "<tr><th>strategy</th><th>verdict</th><th>invocations</th><th>succeeded</th>"
        "<th>failed</th><th>no conn. left</th><th>killed (injected)</th><th>p50 ms</th>"
        "<th>p95 ms</th><th>p99 ms</th><th>connects</th><th>peak server conns</th>"
        "<th>limit</th><th>zombies at end</th><th>failed by reason</th></tr>"
    )
    rows = []
    for r in run["strategies"]:
        s = r["summary"]
        text, cls = verdict(s)
        lat = s["latency_ms"]
        reasons = ", ".join(f"{k} {v}" for k, v in s["failed_by_reason"].items()) or "-"
        rows.append(
            "<tr>"
            f'<td><a href="#s-{escape(r["strategy"])}"><b>{escape(r["strategy"])}</b></a></td>'
            f'<td class="{cls} verdict wrap">{escape(text)}</td>'
            + _cell(s["invocations"])
            + _cell(s["succeeded"])
            + _cell(s["failed"], "bad" if s["failed"] else "good")
            + _cell(s["no_connections_left"], "bad" if s["no_connections_left"] else "")
            + _cell(s["injected_kills"])
            + _cell(lat["p50"])
            + _cell(lat["p95"])
            + _cell(lat["p99"])
            + _cell(s["connects"])
            + _cell(
                s["peak_server_connections"],
                "bad" if s["peak_server_connections"] > s["limit"] else "",
            )
            + _cell(s["limit"])
            + _cell(s["zombies_end"], "bad" if s["zombies_end"] else "good")
            + f'<td class="wrap">{escape(reasons)}</td>'
            "</tr>"
        )
    # In a box of its own: a page narrower than the table scrolls the table, not the page.
    return f'<div class="scroll"><table>{head}{"".join(rows)}</table></div>'


def x_max(run: dict[str, Any]) -> float:
    return float(max([max(r["series"]["t"] or [0.0]) for r in run["strategies"]] + [1.0]))


def seed_chart(r: dict[str, Any], xmax: float, *, width: int = 460) -> str:
    """The AWS sample's chart: remaining connections (left) and errors (right)."""
    s = r["series"]
    limit = r["summary"]["limit"]
    series = [
        Series(
            "no connections left errors", s["t"], s["no_connections_left"], ORANGE, "bars", "right"
        ),
        Series("remaining connections (server)", s["t"], s["remaining"], BLUE),
    ]
    if "counter_remaining" in s:
        series.append(
            Series("counter's remaining", s["t"], s["counter_remaining"], PURPLE, dash="5 3")
        )
    if "budget_remaining" in s:
        series.append(Series("budget remaining", s["t"], s["budget_remaining"], GREEN, dash="5 3"))
    lo = min([0.0, *[v for v in s["remaining"] if v is not None]])
    return render(
        Chart(
            f"{r['strategy']}: remaining connections vs errors",
            series,
            xmax,
            y_label="remaining connections",
            y2_label="errors / 250 ms",
            hlines=[HLine(0, "none left", RED, "2 3")],
            width=width,
            y_min=lo,
            y_max=float(limit) * 1.1 if lo >= 0 else None,
        )
    )


def server_chart(
    r: dict[str, Any], xmax: float, *, width: int = 460, title: str = "", errors: bool = False
) -> str:
    s = r["series"]
    limit = r["summary"]["limit"]
    # Stacked: sessions held by running containers, by frozen ones, zombies, others.
    run_ = s["held_running"]
    fro = [a + b for a, b in zip(run_, s["held_frozen"], strict=False)]
    zom = [a + b for a, b in zip(fro, s["zombies"], strict=False)]
    oth = [a + b for a, b in zip(zom, s["held_other"], strict=False)]
    series = [
        Series("other", s["t"], oth, "#c7c7c7", "area", width=0, opacity=1),
        Series("zombie", s["t"], zom, "#e8646a", "area", width=0, opacity=1),
        Series("frozen", s["t"], fro, "#a6dbe4", "area", width=0, opacity=1),
        Series("running", s["t"], run_, "#5b9bd5", "area", width=0, opacity=1),
    ]
    if errors:
        series.append(
            Series(
                "refused (right axis)", s["t"], s["no_connections_left"], ORANGE, "bars", "right"
            )
        )
    hi = max([limit * 1.25, *s["server_total"]])
    return render(
        Chart(
            title or f"{r['strategy']}: server connections",
            series,
            xmax,
            y_label="sessions",
            hlines=[HLine(limit, f"limit {limit}")],
            y2_label="errors / 250 ms" if errors else "",
            width=width,
            y_max=float(hi),
        )
    )


def latency_chart(r: dict[str, Any], *, width: int = 460) -> str:
    lat = r["series"]["latency"]
    xmax = max(lat["t"] or [1.0]) + 0.5
    series = [
        Series("p50", lat["t"], lat["p50"], GREEN, "dots" if _sparse(lat["p50"]) else "line"),
        Series("p95", lat["t"], lat["p95"], ORANGE, "dots" if _sparse(lat["p95"]) else "line"),
        Series("p99", lat["t"], lat["p99"], RED, "dots" if _sparse(lat["p99"]) else "line"),
    ]
    return render(
        Chart(
            f"{r['strategy']}: latency of successful invocations",
            series,
            xmax,
            y_label="ms (arrival → response)",
            width=width,
        )
    )


def _sparse(values: list[float | None]) -> bool:
    return sum(1 for v in values if v is not None) < 3


def containers_chart(r: dict[str, Any], xmax: float, *, width: int = 460) -> str:
    s = r["series"]
    series = [
        Series("running", s["t"], s["running"], BLUE),
        Series("frozen", s["t"], s["frozen"], TEAL),
        Series("dead", s["t"], s["dead"], GREY, dash="4 3"),
    ]
    return render(
        Chart(f"{r['strategy']}: containers", series, xmax, y_label="containers", width=width)
    )


def render_report(run: dict[str, Any]) -> str:
    xmax = x_max(run)
    sc = run["scenario"]
    db = run["database"]
    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    phases = "; ".join(
        ", ".join(f"{k}={v}" for k, v in p.items() if k != "payload") for p in sc["phases"]
    )
    fn = sc["function"]
    wl = sc["workload"]
    first = run["strategies"][0] if run["strategies"] else {}
    slow = sum(1 for i in first.get("invocations", []) if i.get("slow"))
    if run.get("virtual") and first:
        slow = first["summary"]["injected_kills"]
    head = (
        f"<h1>fleetpool fleet report — {escape(str(sc['name']))}</h1>"
        f'<p class="sub">{escape(db["version"] or db["engine"])}'
        f"{' (embedded)' if db['embedded'] else ''}, connection limit <b>{db['limit']}</b> · "
        f"traffic: {escape(phases)} · think {wl['think']} s, "
        f"{slow} invocations made to outlive the {fn['timeout']} s timeout · "
        f"concurrency {fn['concurrency']}, idle lifetime {fn['idle_lifetime']} s, "
        f"lease TTL {sc['lease_ttl']} s · {run['host']['cpus']} CPUs · {when} · "
        f"run took {run['wall_seconds']} s</p>"
    )
    if run.get("virtual"):
        head += (
            '<p class="sub"><b>Simulated on a virtual clock</b> (<code>fleetpool simulate '
            "--virtual</code>): no processes, no server; the library's own decision functions "
            "with the model's costs: "
            + escape(", ".join(f"{k} {v} s" for k, v in run.get("costs", {}).items()))
            + ". Charts are thinned to a readable number of points.</p>"
        )
    for sk in run.get("skipped", []):
        head += f'<p class="sub">Skipped: {escape(sk["skipped"])}</p>'

    grid = "".join(
        server_chart(
            r, xmax, width=460, errors=True, title=f"{r['strategy']}: server sessions vs limit"
        )
        for r in run["strategies"]
    )
    sections = []
    for r in run["strategies"]:
        s = r["summary"]
        text, cls = verdict(s)
        reasons = ", ".join(f"{k}: {v}" for k, v in s["failed_by_reason"].items()) or "none"
        extra = ""
        if "counter_end" in s:
            extra = (
                f" · counter at the end: {s['counter_end']} of {s['limit']} "
                f"(<b>{s['counter_leaked']} leaked</b>)"
            )
        if "budget_end" in s:
            b = s["budget_end"]
            extra += f" · budget at the end: {b.get('in_use')} leases in use"
        sections.append(
            f'<h2 id="s-{escape(r["strategy"])}">{escape(r["strategy"])}</h2>'
            f'<p class="sub">{escape(r["description"])} · <code>{escape(r["handler"])}</code></p>'
            f'<p><span class="verdict" style="color:{"#17622b" if cls == "good" else "#8a1c1c"}">'
            f"{escape(text)}</span> · {s['invocations']} invocations, {s['succeeded']} succeeded, "
            f"{s['cold_starts']} cold starts in {s['containers']} containers, "
            f"{s['connects']} connects · failures: {escape(reasons)}{extra}</p>"
            f'<div class="pair">{seed_chart(r, xmax)}{server_chart(r, xmax)}'
            f"{latency_chart(r)}{containers_chart(r, xmax)}</div>"
        )
    note = (
        '<p class="note">How to read this: <b>remaining connections</b> is the limit minus '
        "the sessions the server itself reports (<code>pg_stat_activity</code> / processlist, "
        "sampled every 250 ms; the observer's own session excluded). <b>No connections left</b> "
        "counts invocations refused by the server (too many connections) or by a counter/budget "
        "in front of it. A <b>zombie</b> is a server session whose container is dead, or frozen "
        "longer than the lease TTL (red in the stacked session charts). "
        "<b>Killed (injected)</b> invocations were made "
        "to outlive the function timeout, so the platform killed their container mid-invocation "
        "— the same invocations for every strategy — and are not counted as failures. Latency "
        "is from arrival to response, including cold starts and waits.</p>"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>fleetpool report — {escape(str(sc['name']))}</title><style>{CSS}</style>"
        f"</head><body><main>{head}{summary_table(run)}{note}"
        f'<h2>Server connections and refusals, all strategies</h2><div class="multi">{grid}</div>'
        f"{''.join(sections)}</main></body></html>"
    )


def plan_page(result: dict[str, Any]) -> str:
    """``fleetpool plan --out``: the frontier it explored, one line per lease TTL."""
    points = result["frontier"]
    ttls = sorted({p["lease_ttl"] for p in points})
    colors = ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]
    series = []
    for i, ttl in enumerate(ttls):
        pts = sorted((p for p in points if p["lease_ttl"] == ttl), key=lambda p: p["limit"])
        series.append(
            Series(
                f"success %, lease TTL {ttl:g} s",
                [p["limit"] for p in pts],
                [100.0 * p["success"] for p in pts],
                colors[i % len(colors)],
            )
        )
    target = result["target"]
    chart = Chart(
        f"{result['strategy']}: success rate by {result['setting']}",
        series,
        float(max([p["limit"] for p in points] + [1])),
        y_label="success %",
        x_label=result["setting"],
        y_max=100.0,
        hlines=[HLine(100.0 * target["success"], "target")],
        width=720,
        height=320,
    )
    rec = result["recommended"]
    verdict_line = (
        "no setting meets the target"
        if rec is None
        else f"recommended: {result['setting']} {rec['limit']}, lease TTL {rec['lease_ttl']:g} s "
        f"-> success {rec['success']:.2%}, p99 {rec['p99_ms']} ms, peak {rec['peak_sessions']} "
        f"sessions, headroom {rec['headroom']}"
    )
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(str(p[k]))}</td>" for k in PLAN_COLUMNS) + "</tr>"
        for p in points
    )
    head = "".join(f"<th>{escape(k)}</th>" for k in PLAN_COLUMNS)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>fleetpool plan</title><style>{CSS}</style></head><body><main>"
        f"<h1>fleetpool plan — {escape(result['strategy'])}</h1>"
        f'<p class="sub">{escape(verdict_line)}</p>{render(chart)}'
        f"<table><tr>{head}</tr>{rows}</table></main></body></html>"
    )


PLAN_COLUMNS = ("limit", "lease_ttl", "success", "p50_ms", "p99_ms", "peak_sessions", "headroom")


def write_report(run: dict[str, Any], html_path: Path | None, json_path: Path | None) -> None:
    if json_path is not None:
        json_path.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    if html_path is not None:
        html_path.write_text(render_report(run), encoding="utf-8")
