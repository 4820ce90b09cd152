"""The ``data-api`` strategy: a fleet that holds no database connection at all, on
PostgreSQL and MariaDB (a real ``fleetpool data-api`` process owns the pool)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("httptools")

from fleetpool.fleet.emulator import FunctionConfig
from fleetpool.fleet.run import run_scenario
from fleetpool.fleet.scenario import Scenario
from fleetpool.fleet.traffic import Phase, Workload

pytestmark = pytest.mark.slow


def scenario(dsn: str | None) -> Scenario:
    # A burst of twice the pool in flight, then a trickle on warm containers.
    return Scenario(
        name="t",
        strategies=("data-api",),
        dsn=dsn,
        limit=4,
        max_connections=30,
        function=FunctionConfig(handler="", timeout=10.0, concurrency=8, idle_lifetime=1.5),
        workload=Workload(think=0.02, query="SELECT 1"),
        phases=(Phase("burst", 1.0, iterations=8, spread=0.3), Phase("steady", 2.0, rate=5.0)),
    )


def check(run: dict[str, Any]) -> None:
    (result,) = run["strategies"]
    s = result["summary"]
    assert result["strategy"] == "data-api"
    assert s["invocations"] > 8
    assert s["failed"] == 0, s.get("failed_by_reason")
    assert s["succeeded"] == s["invocations"]
    assert s["connects"] == 0  # no container ever opened a database connection
    assert s["peak_fleet_connections"] == 0  # nor held a server session
    assert s["peak_server_connections"] <= 4  # the endpoint's pool is the fleet's limit
    assert result["proxy"]["exit_status"] == 0  # the endpoint stopped cleanly


def test_data_api_strategy_on_postgres() -> None:
    run = run_scenario(scenario(None))
    assert run["database"]["engine"] == "postgresql"
    check(run)


def test_data_api_strategy_on_mariadb(mysql_dsn: str) -> None:
    run = run_scenario(scenario(mysql_dsn))
    assert run["database"]["engine"] == "mysql"
    check(run)
