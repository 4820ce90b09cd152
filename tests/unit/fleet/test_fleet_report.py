"""The HTML report: self-contained, charts present, verdicts right."""

from __future__ import annotations

import re
from typing import Any

from fleetpool.fleet.emulator import InvocationRecord
from fleetpool.fleet.report import render_report, verdict
from fleetpool.fleet.results import series, summarize
from fleetpool.fleet.svg import Chart, Series, nice_ticks, render


def fake_run() -> dict[str, Any]:
    samples = []
    for i in range(40):
        t = (i + 1) * 0.25
        total = min(10, i)
        samples.append(
            {
                "t": t,
                "server": {
                    "total": total,
                    "fleet": total,
                    "other": 0,
                    "by_state": {"idle": total},
                    "owners": {"running": total, "frozen": 0, "zombie": 0, "other": 0},
                },
                "remaining": 10 - total,
                "zombies": 1 if i > 30 else 0,
                "containers": {"starting": 0, "running": 2, "frozen": 1, "dead": 0},
            }
        )
    records = [
        InvocationRecord(
            i,
            i * 0.1,
            i * 0.1,
            i * 0.1 + 0.5,
            i % 3 != 0,
            "ok" if i % 3 else "too_many_connections",
        )
        for i in range(90)
    ]
    strat = {
        "strategy": "naive",
        "description": "d",
        "handler": "m:h",
        "wall_seconds": 1.0,
        "summary": summarize(records, samples, limit=10),
        "series": series(records, samples),
        "invocations": [],
        "observer_errors": 0,
    }
    return {
        "scenario": {
            "name": "t",
            "phases": [{"kind": "steady", "rate": 1}],
            "function": {"timeout": 3, "concurrency": 5, "idle_lifetime": 2},
            "workload": {"think": 0.1, "slow_fraction": 0.0},
            "lease_ttl": 3,
        },
        "database": {
            "engine": "postgresql",
            "version": "PostgreSQL 15",
            "limit": 10,
            "embedded": True,
        },
        "host": {"cpus": 2},
        "wall_seconds": 2.0,
        "strategies": [strat, {**strat, "strategy": "global"}],
    }


def test_report_is_self_contained_with_charts() -> None:
    html = render_report(fake_run())
    assert "<script" not in html
    assert not re.search(r"""(src|href)=["']https?:""", html)
    assert html.count("<svg") == 2 + 2 * 4  # grid + 4 per strategy
    assert html.count("<path") > 10
    assert "naive" in html and "global" in html
    assert "no conn. left" in html


def test_verdict() -> None:
    good = {"failed": 0, "peak_server_connections": 10, "limit": 10, "zombies_end": 0}
    assert verdict(good)[1] == "good"
    text, cls = verdict({**good, "failed": 2, "zombies_end": 1, "counter_leaked": 3})
    assert cls == "bad" and "2 failed" in text and "1 zombies" in text and "leaked 3" in text


def test_nice_ticks_and_render() -> None:
    assert nice_ticks(10) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(0) == [0.0, 1.0]
    svg = render(
        Chart(
            "c",
            [
                Series("s", [0, 1, 2], [1, None, 3], "#000"),
                Series("b", [0, 1, 2], [0, 2, 1], "#f00", "bars", "right"),
            ],
            2.0,
        )
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<path" in svg and "<rect" in svg


def test_summary_table_is_whole_when_stderr_is_not_a_terminal() -> None:
    # Under pytest stderr is not a terminal, as in CI logs or behind `| tee`.
    from fleetpool.fleet.cli import console, summary_table

    run = fake_run()
    long_name = "zombie-killer (serverless-mysql/-pg style, kills idle sessions past 80%)"
    run["strategies"][0]["strategy"] = long_name
    with console.capture() as captured:
        console.print(summary_table(run))
    text = captured.get()
    assert long_name in text and "…" not in text
    assert max(len(line) for line in text.splitlines()) > 80
    assert "\x1b[" not in text  # no colour codes in a log


def test_report_table_sits_in_a_scroll_box() -> None:
    html = render_report(fake_run())
    assert '<div class="scroll"><table>' in html and ".scroll{overflow-x:auto" in html
