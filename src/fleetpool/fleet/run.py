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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError
from .embedded import EmbeddedPostgres
from .emulator import Fleet, InvocationRecord
from .observer import Observer, connect_observer, read_sessions, server_limit
from .results import series, summarize
from .scenario import Scenario
from .strategies import DESCRIPTIONS, STRATEGIES
from .strategies._workload import engine_of
from .traffic import schedule

#: Called with (strategy, done, total) as invocations complete.
Progress = Callable[[str, int, int], None]


@dataclass
class Target:
    """The database under test."""

    dsn: str  # the workload's
    admin_dsn: str  # the observer's
    engine: str
    limit: int
    embedded: bool
    version: str = ""


@contextlib.contextmanager
def open_target(scenario: Scenario) -> Iterator[Target]:
    """The scenario's database, or an embedded PostgreSQL started for the run."""
    if scenario.dsn:
        engine = engine_of(scenario.dsn)
        conn = connect_observer(scenario.dsn)
        try:
            limit = server_limit(conn, engine) - 1  # the observer holds one slot
            version = _version(conn, engine)
        finally:
            conn.close()
        yield Target(scenario.dsn, scenario.dsn, engine, limit, False, version)
        return
    with EmbeddedPostgres(max_connections=scenario.max_connections) as pg:
        conn = connect_observer(pg.admin_dsn)
        try:
            version = _version(conn, "postgres")
        finally:
            conn.close()
        yield Target(pg.dsn, pg.admin_dsn, "postgres", scenario.max_connections, True, version)


def _version(conn: Any, engine: str) -> str:
    cur = conn.cursor()
    try:
        cur.execute("SELECT version()")
        row = cur.fetchone()
    finally:
        cur.close()
    return str(row[0]).split(" on ")[0].split(",")[0] if row else ""


def with_app_name(dsn: str, app: str) -> str:
    """The DSN with ``application_name`` set (PostgreSQL only; MySQL has no such field)."""
    if engine_of(dsn) != "postgres":
        return dsn
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "application_name"]
    query.append(("application_name", app))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _cleanup(target: Target, app_prefix: str, sessions: set[int], timeout: float = 10.0) -> None:
    """End any session the strategy left behind and wait until the server shows none."""
    conn = connect_observer(target.admin_dsn)
    try:
        deadline = time.monotonic() + timeout
        while True:
            left = [
                s
                for s in read_sessions(conn, target.engine)
                if s.app.startswith(app_prefix + ":") or s.id in sessions
            ]
            if not left or time.monotonic() > deadline:
                return
            cur = conn.cursor()
            try:
                for s in left:
                    with contextlib.suppress(Exception):
                        if target.engine == "postgres":
                            cur.execute("SELECT pg_terminate_backend(%s)", (s.id,))
                        else:
                            cur.execute(f"KILL {int(s.id)}")
            finally:
                cur.close()
            time.sleep(0.2)
    finally:
        conn.close()


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
    if strategy == "custom":
        if not scenario.handler:
            raise ConfigError("strategy 'custom' needs [function] handler = 'module:function'")
        handler = scenario.handler
    elif strategy in STRATEGIES:
        handler = STRATEGIES[strategy]
    else:
        raise ConfigError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
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
    budget = None
    extras: list[Callable[[], dict[str, Any]]] = []
    if strategy in ("fleetpool", "proxy"):
        from ..budget import open_budget

        budget = open_budget(budget_url, budget_name)
        budget.configure(limit=limit)

        def budget_view() -> dict[str, Any]:
            assert budget is not None
            snap = budget.snapshot()
            return {
                "budget": {
                    "in_use": snap.in_use,
                    "remaining": snap.remaining,
                    "limit": snap.limit,
                    "waiting": snap.waiting,
                }
            }

        extras.append(budget_view)
    counter_limit = None
    if strategy == "counter":
        from .strategies._counter import init_counter, read_counter

        init_counter(counter_path, budget_name, limit)
        counter_limit = limit
        extras.append(lambda: {"counter": read_counter(counter_path, budget_name)})

    logs = (log_dir or workdir / "logs") / strategy
    logs.mkdir(parents=True, exist_ok=True)
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
        with contextlib.suppress(Exception):
            _cleanup(target, app_prefix, sessions)
        if budget is not None:
            budget.close()
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
    """Run every strategy of ``scenario``; return the whole run as a JSON-ready dict."""
    strategies = list(scenario.strategies)
    if scenario.handler and "custom" not in strategies:
        strategies = ["custom"]
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    with (
        open_target(scenario) as target,
        tempfile.TemporaryDirectory(prefix="fleetpool-run-") as tmp,
    ):
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        for strategy in strategies:
            result = run_strategy(
                scenario, target, strategy, workdir, progress=progress, log_dir=log_dir
            )
            results.append(result)
            if on_strategy is not None:
                on_strategy(strategy, result)
        target_info = {
            "engine": target.engine,
            "version": target.version,
            "limit": target.limit,
            "embedded": target.embedded,
            "dsn": _redact(target.dsn),
        }
    return {
        "fleetpool_fleet_report": 1,
        "scenario": _scenario_dict(scenario),
        "database": target_info,
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "wall_seconds": round(time.monotonic() - started, 1),
        "strategies": results,
    }


def _redact(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return dsn


def _scenario_dict(scenario: Scenario) -> dict[str, Any]:
    d = asdict(scenario)
    d["dsn"] = _redact(scenario.dsn) if scenario.dsn else None
    d["duration"] = scenario.duration
    d["phases"] = [
        {k: v for k, v in asdict(p).items() if v not in (0, 0.0, (), {}, None)}
        for p in scenario.phases
    ]
    return d
