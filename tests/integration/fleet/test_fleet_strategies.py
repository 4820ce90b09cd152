"""Every strategy handler runs against real PostgreSQL and MariaDB (short, gentle runs)."""

from __future__ import annotations

from typing import Any

import pytest

from fleetpool.fleet.emulator import FunctionConfig
from fleetpool.fleet.run import run_scenario
from fleetpool.fleet.scenario import Scenario
from fleetpool.fleet.traffic import Phase, Workload

STRATEGIES = ["naive", "global", "pool", "counter", "zombie-killer", "fleetpool"]

pytestmark = pytest.mark.slow


def gentle(strategy: str, dsn: str | None) -> Scenario:
    return Scenario(
        name="t",
        strategies=(strategy,),
        dsn=dsn,
        max_connections=30,
        lease_ttl=1.0,
        max_wait=3.0,
        # 6 containers x 5 pooled connections fit in 30; the load rarely needs 2 at once.
        function=FunctionConfig(handler="", timeout=5.0, concurrency=6, idle_lifetime=1.0),
        workload=Workload(think=0.02),
        phases=(Phase("steady", 2.0, rate=5.0),),
    )


def check(run: dict[str, Any], strategy: str) -> None:
    (result,) = run["strategies"]
    s = result["summary"]
    assert result["strategy"] == strategy
    assert s["invocations"] > 3
    assert s["failed"] == 0, s["failed_by_reason"]
    assert s["succeeded"] == s["invocations"]
    assert s["connects"] >= 1
    if strategy == "pool":
        assert s["connects"] >= 5
    if strategy == "naive":
        assert s["connects"] == s["invocations"]
    if strategy in ("global", "pool", "zombie-killer", "fleetpool"):
        # Warm sessions outlive invocations: the 250 ms observer must have seen them.
        assert s["peak_server_connections"] >= 1
    assert result["series"]["t"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_on_postgres(strategy: str) -> None:
    run = run_scenario(gentle(strategy, None))
    assert run["database"]["engine"] == "postgresql"
    check(run, strategy)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_on_mariadb(strategy: str, mysql_dsn: str) -> None:
    run = run_scenario(gentle(strategy, mysql_dsn))
    assert run["database"]["engine"] == "mysql"
    check(run, strategy)
