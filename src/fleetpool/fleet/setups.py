"""What a strategy run must prepare besides the fleet, one function per ``Strategy.setup``.

Strategy: a setup reads and extends one :class:`StrategyRun` -- environment
variables for the containers, extra observer columns, a service to stop before
the clean-up, closers -- so :func:`fleetpool.fleet.run.run_strategy` stays the
same for every strategy and a registry record names its setup by function name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .scenario import Scenario
from .services import DataApiProcess, ProxyProcess
from .target import Target, with_app_name


@dataclass
class StrategyRun:
    """One strategy's run as the setups see it."""

    scenario: Scenario
    target: Target
    strategy: str
    limit: int
    logs: Path
    app_prefix: str
    budget_url: str
    budget_name: str
    counter_path: str
    #: Environment variables every container gets.
    env: dict[str, str]
    #: Extra columns for each observer sample.
    extras: list[Callable[[], dict[str, Any]]] = field(default_factory=list)
    #: The counter strategy's limit (the summary reports leaked slots against it).
    counter_limit: int | None = None
    #: A process started for the run: stopped before the clean-up, reported in the result.
    service: ProxyProcess | None = None
    #: Called after the run, last registered first.
    closers: list[Callable[[], object]] = field(default_factory=list)


def budget(run: StrategyRun) -> None:
    """The fleetpool client's budget, configured to the fleet's limit and observed."""
    from ..budget import open_budget

    opened = open_budget(run.budget_url, run.budget_name)
    run.closers.append(opened.close)
    opened.configure(limit=run.limit)

    def budget_view() -> dict[str, Any]:
        snap = opened.snapshot()
        return {
            "budget": {
                "in_use": snap.in_use,
                "remaining": snap.remaining,
                "limit": snap.limit,
                "waiting": snap.waiting,
            }
        }

    run.extras.append(budget_view)


def counter(run: StrategyRun) -> None:
    """The counter strategy's SQLite row, reset to the limit and observed."""
    from .strategies._counter import init_counter, read_counter

    init_counter(run.counter_path, run.budget_name, run.limit)
    run.counter_limit = run.limit
    path, name = run.counter_path, run.budget_name
    run.extras.append(lambda: {"counter": read_counter(path, name)})


def proxy(run: StrategyRun) -> None:
    """fleetpool's proxy in front of the target, pool = the fleet's limit.

    ``open_target`` already left the observer's slot out of the limit, and nothing
    else (no reaper) connects on the fleet's behalf.
    """
    pool_app = f"{run.app_prefix}:proxy-pool"
    service = ProxyProcess(
        with_app_name(run.target.dsn, pool_app), run.limit, run.logs / "proxy.log"
    )
    service.start()
    run.service = service
    run.closers.append(service.stop)
    run.env["FLEET_PROXY_DSN"] = service.client_dsn()
    run.env["FLEET_PROXY_APP_NAME"] = pool_app


def data_api(run: StrategyRun) -> None:
    """The Data API endpoint owns a pool of the fleet's limit; containers hold no session."""
    service = DataApiProcess(run.target.dsn, run.limit, run.logs / "data-api.log")
    service.start()
    run.service = service
    run.closers.append(service.stop)
    run.env.update(service.client_env())


SETUPS: dict[str, Callable[[StrategyRun], None]] = {
    "budget": budget,
    "counter": counter,
    "proxy": proxy,
    "data_api": data_api,
}


def prepare(name: str, run: StrategyRun) -> None:
    """Run the setup a registry record names ("" for none)."""
    if not name:
        return
    try:
        fn = SETUPS[name]
    except KeyError:
        raise ConfigError(f"unknown strategy setup {name!r}; known: {', '.join(SETUPS)}") from None
    fn(run)
