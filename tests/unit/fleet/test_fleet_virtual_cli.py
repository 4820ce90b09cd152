"""``fleetpool simulate --virtual`` and ``fleetpool plan`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from fleetpool.cli import EXIT_USAGE
from tests.cli_run import fleetpool

EXAMPLE = Path(__file__).resolve().parents[3] / "src/fleetpool/fleet/scenarios/example.toml"


def test_simulate_virtual_writes_the_demo_report(tmp_path: Path) -> None:
    out, js = tmp_path / "r.html", tmp_path / "r.json"
    result = fleetpool(
        "simulate", "--virtual", str(EXAMPLE), "--strategies", "naive,fleetpool",
        "--out", str(out), "--json", str(js), "-q",
    )  # fmt: skip
    assert result.code == 0, result
    run = json.loads(js.read_text())
    assert run["virtual"] is True
    assert [r["strategy"] for r in run["strategies"]] == ["naive", "fleetpool"]
    assert "Simulated on a virtual clock" in out.read_text()


def test_virtual_and_dsn_exclude_each_other() -> None:
    result = fleetpool("simulate", "--virtual", str(EXAMPLE), "--dsn", "postgresql://h/db")
    assert result.code == EXIT_USAGE
    assert "--dsn and --virtual exclude each other" in result.err


def test_plan_prints_a_recommendation_and_writes_its_frontier(tmp_path: Path) -> None:
    js, page = tmp_path / "plan.json", tmp_path / "plan.html"
    result = fleetpool(
        "plan", str(EXAMPLE), "--max-p99", "1000", "--json", str(js), "--out", str(page)
    )
    assert result.code == 0, result
    plan = json.loads(js.read_text())
    rec = plan["recommended"]
    assert rec is not None and rec["p99_ms"] <= 1000 and rec["success"] >= 0.99
    assert rec in plan["frontier"]
    assert "<svg" in page.read_text()


def test_plan_refuses_what_it_cannot_tune() -> None:
    result = fleetpool("plan", str(EXAMPLE), "--strategy", "naive")
    assert result.code == EXIT_USAGE
    assert "plan tunes fleetpool, proxy; got strategy 'naive'" in result.err


def test_plan_names_a_missing_file() -> None:
    result = fleetpool("plan", "/nonexistent/scenario.toml")
    assert result.code == EXIT_USAGE
    assert "cannot read scenario file /nonexistent/scenario.toml" in result.err
