"""Running a scenario: each strategy in turn against the same database and the same traffic.

Strategy: a strategy run is isolated -- fresh containers, a fresh budget name,
a fresh counter, and a server with none of the previous strategy's sessions
left -- so the strategies are compared on equal terms. Settings reach the
containers as environment variables, as a platform passes a function's
configuration. The run's result is one JSON-ready dict (the report reads only it).
"""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, FleetpoolError
from ..redact import redact_url
from .emulator import Fleet, InvocationRecord
from .observer import Observer
from .results import series, summarize
from .scenario import Scenario
from .setups import StrategyRun, prepare
from .strategies import DESCRIPTIONS, REGISTRY
from .target import Target, cleanup, open_target, with_app_name
from .traffic import schedule

#: Called with (strategy, done, total) as invocations complete.
Progress = Callable[[str, int, int], None]


__all__ = [
    "Progress",
    "StrategySkipped",
    "Target",
    "open_target",
    "run_scenario",
    "run_strategy",
]


class StrategySkipped(FleetpoolError):
    """A strategy that cannot run against this target (e.g. PostgreSQL-only on MySQL)."""


def run_strategy(
    scenario: Scenario,
    target: Target,
    strategy: str,
    workdir: Path,
    *,
    progress: Progress | None = None,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the scenario's traffic against one strategy; return its result dict.

    Containers' output goes to ``log_dir/<strategy>/<container>.log`` (default:
    the temporary work dir, discarded).
    """
    spec = None
    if strategy == "custom":
        if not scenario.handler:
            raise ConfigError("strategy 'custom' needs [function] handler = 'module:function'")
        handler = scenario.handler
    elif strategy in REGISTRY:
        spec = REGISTRY[strategy]
        handler = spec.handler
    else:
        raise ConfigError(f"unknown strategy {strategy!r}; known: {', '.join(REGISTRY)}")
    if spec is not None and target.engine not in spec.engines:
        raise StrategySkipped(
            f"strategy {strategy!r} skipped: {spec.skip_reason}, "
            f"and this database is {target.version or target.engine}"
        )
    run_id = uuid.uuid4().hex[:6]
    limit = scenario.limit or target.limit
    app_prefix = f"fleet:{strategy}"
    # A spike puts ~100 processes on one SQLite file: allow store calls 10 s.
    budget_url = scenario.budget_url or f"sqlite:///{workdir}/budget.db?timeout=10"
    budget_name = f"{scenario.name}-{strategy}-{run_id}"
    counter_path = str(workdir / "counter.db")
    env = {
        "FLEET_DSN": target.dsn,
        "FLEET_STRATEGY": strategy,
        "FLEET_LIMIT": str(limit),
        "FLEET_BUDGET_URL": budget_url,
        "FLEET_BUDGET_NAME": budget_name,
        "FLEET_LEASE_TTL": str(scenario.lease_ttl),
        "FLEET_MAX_WAIT": str(scenario.max_wait),
        "FLEET_COUNTER_PATH": counter_path,
        "FLEET_COUNTER_NAME": budget_name,
        "FLEET_ZOMBIE_MIN_IDLE": str(scenario.zombie_min_idle),
        "FLEET_POOL_SIZE": str(scenario.pool_size),
        "FLEET_THINK": str(scenario.workload.think),
        "FLEET_CONNECT_TIMEOUT": "5",
        **scenario.env,
    }
    logs = (log_dir or workdir / "logs") / strategy
    logs.mkdir(parents=True, exist_ok=True)
    run = StrategyRun(
        scenario, target, strategy, limit, logs, app_prefix, budget_url, budget_name,
        counter_path, env,
    )  # fmt: skip
    try:
        prepare(spec.setup if spec is not None else "", run)
        service = run.service
        result = _run_fleet(
            scenario,
            target,
            strategy,
            handler,
            env,
            logs,
            limit=limit,
            app_prefix=app_prefix,
            extras=run.extras,
            counter_limit=run.counter_limit,
            progress=progress,
            stop_first=service.stop if service is not None else None,
        )
    finally:
        for close in reversed(run.closers):
            close()
    service = run.service
    if service is not None and service.proc is not None:
        result["proxy"] = {
            "pid": service.proc.pid,
            "port": service.port,
            "pool_size": service.pool_size,
            "exit_status": service.proc.returncode,
        }
    return result


def _run_fleet(
    scenario: Scenario,
    target: Target,
    strategy: str,
    handler: str,
    env: dict[str, str],
    logs: Path,
    *,
    limit: int,
    app_prefix: str,
    extras: list[Callable[[], dict[str, Any]]],
    counter_limit: int | None,
    progress: Progress | None,
    stop_first: Callable[[], object] | None,
) -> dict[str, Any]:
    """The fleet, its observer and the traffic; ``stop_first`` runs before the cleanup."""
    function = replace(scenario.function, handler=handler, log_dir=str(logs))
    fleet = Fleet(
        function, env, app_prefix=app_prefix, dsn_for=lambda app: with_app_name(target.dsn, app)
    )
    observer = Observer(
        target.admin_dsn,
        app_prefix=app_prefix,
        containers=fleet.view,
        clock=fleet.now,
        zombie_after=scenario.lease_ttl,
        limit=limit,
        extras=lambda: {k: v for fn in extras for k, v in fn().items()},
    )
    arrivals = schedule(list(scenario.phases), scenario.workload, scenario.seed)
    total = len(arrivals)
    done = 0

    def on_done(rec: InvocationRecord) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(strategy, done, total)

    started = time.monotonic()
    observer.start()
    try:
        records = fleet.run(
            arrivals, until=scenario.duration, tail=scenario.lease_ttl + 0.5, on_done=on_done
        )
        observer.samples.append(observer.observe())
    finally:
        samples = observer.stop()
        observer.close()
        sessions = {int(s) for v in fleet.view().values() for s in v.sessions if str(s).isdigit()}
        fleet.shutdown()
        if stop_first is not None:
            # A live proxy would keep (or reopen) its pooled sessions while the
            # cleanup waits for the server to show none.
            stop_first()
        with contextlib.suppress(Exception):
            cleanup(target, app_prefix, sessions)
    return {
        "strategy": strategy,
        "description": DESCRIPTIONS.get(strategy, scenario.handler or ""),
        "handler": handler,
        "wall_seconds": round(time.monotonic() - started, 2),
        "summary": summarize(records, samples, limit=limit, counter_limit=counter_limit),
        "series": series(records, samples),
        "invocations": [r.as_dict() for r in records],
        "observer_errors": observer.errors,
    }


def run_scenario(
    scenario: Scenario,
    *,
    progress: Progress | None = None,
    on_strategy: Callable[[str, dict[str, Any]], None] | None = None,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Run every strategy of ``scenario``; return the whole run as a JSON-ready dict.

    A strategy that cannot run against the target (a PostgreSQL-only one on
    MySQL) is listed under ``skipped`` with the reason, and ``on_strategy`` gets
    ``{"strategy": ..., "skipped": reason}`` for it.
    """
    strategies = list(scenario.strategies)
    if scenario.handler and "custom" not in strategies:
        strategies = ["custom"]
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    with (
        open_target(scenario) as target,
        tempfile.TemporaryDirectory(prefix="fleetpool-run-") as tmp,
    ):
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        for strategy in strategies:
            try:
                result = run_strategy(
                    scenario, target, strategy, workdir, progress=progress, log_dir=log_dir
                )
            except StrategySkipped as exc:
                # One strategy that cannot run here must not cost the user the others.
                result = {"strategy": strategy, "skipped": str(exc)}
                skipped.append(result)
            else:
                results.append(result)
            if on_strategy is not None:
                on_strategy(strategy, result)
        target_info = {
            "engine": target.engine,
            "version": target.version,
            "limit": target.limit,
            "embedded": target.embedded,
            "dsn": redact_url(target.dsn),
        }
    return {
        "fleetpool_fleet_report": 1,
        "scenario": scenario_dict(scenario),
        "database": target_info,
        "host": host_info(),
        "wall_seconds": round(time.monotonic() - started, 1),
        "strategies": results,
        "skipped": skipped,
    }


def host_info() -> dict[str, Any]:
    """The machine a run (or a simulation) ran on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def scenario_dict(scenario: Scenario) -> dict[str, Any]:
    d = asdict(scenario)
    d["dsn"] = redact_url(scenario.dsn) if scenario.dsn else None
    d["duration"] = scenario.duration
    d["phases"] = [
        {k: v for k, v in asdict(p).items() if v not in (0, 0.0, (), {}, None)}
        for p in scenario.phases
    ]
    return d
