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
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError, FleetpoolError
from ..redact import redact_url
from .embedded import EmbeddedPostgres
from .emulator import Fleet, InvocationRecord
from .observer import Observer, connect_observer, read_sessions, server_limit
from .results import series, summarize
from .scenario import Scenario
from .strategies import DESCRIPTIONS, POSTGRES_ONLY, STRATEGIES
from .strategies._workload import engine_of
from .traffic import schedule

#: Called with (strategy, done, total) as invocations complete.
Progress = Callable[[str, int, int], None]

PROXY_READY_TIMEOUT = 15.0  # seconds the proxy may take to listen
PROXY_STOP_TIMEOUT = 5.0  # seconds of graceful drain before SIGKILL


class StrategySkipped(FleetpoolError):
    """A strategy that cannot run against this target (e.g. PostgreSQL-only on MySQL)."""


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


class ProxyProcess:
    """``python -m fleetpool.proxy`` in front of the target, for one strategy run.

    It listens on port 0 and the port is read back from its "listening on"
    line: no window in which another process could take a port picked in
    advance. Its output goes to ``log`` (kept with ``--logs``).
    """

    marker = "fleetpool proxy listening on "

    def __init__(self, upstream: str, pool_size: int, log: Path) -> None:
        self.upstream = upstream
        self.pool_size = pool_size
        self.log = log
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        # A MySQL server user without a password: the containers log in to the proxy
        # with this one-run secret instead (MySQL logins have no "trust").
        self.client_password = ""
        if engine_of(upstream) == "mysql" and not urlsplit(upstream).password:
            self.client_password = uuid.uuid4().hex

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "fleetpool.proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            self.upstream,
            "--pool-size",
            str(self.pool_size),
        ]
        if self.client_password:
            # The proxy logs in to the server as the URL's user, without a password.
            cmd += ["--set", "server_login=upstream"]
        elif not urlsplit(self.upstream).password:
            # The server trusts this user without a password (the embedded one
            # does), so SCRAM at the proxy would only lock out the clients; it
            # listens on loopback only, for the length of one strategy run.
            cmd += ["--auth-method", "trust"]
        return cmd

    def _server_user(self) -> str:
        """The user the proxy logs in to the server as (the URL's, or the default)."""
        from ..proxy.config import parse_upstream  # the proxy's own package, on demand

        return parse_upstream(self.upstream).user

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.client_password:
            from ..proxy.config import ENV_USER_PREFIX

            env[f"{ENV_USER_PREFIX}{self._server_user()}"] = self.client_password
        return env

    def start(self, timeout: float = PROXY_READY_TIMEOUT) -> ProxyProcess:
        cmd = self.command()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=self.environment()
            )
        try:
            self.port = self._wait_listening(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self, timeout: float) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        marker = self.marker
        while True:
            with contextlib.suppress(OSError):
                for line in self.log.read_text(errors="replace").splitlines():
                    if line.startswith(marker):
                        port = int(line[len(marker) :].rsplit(":", 1)[1])
                        if _accepts(port):
                            return port
            if self.proc.poll() is not None:
                raise ConfigError(
                    f"the fleetpool proxy exited with status {self.proc.returncode} "
                    f"before listening: {_tail(self.log)}"
                )
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"the fleetpool proxy did not listen within {timeout:.0f} s: {_tail(self.log)}"
                )
            time.sleep(0.05)

    def client_dsn(self) -> str:
        """The target's DSN with the proxy's address (same user, password and database)."""
        parts = urlsplit(self.upstream)
        userinfo = parts.netloc.rpartition("@")[0]
        if self.client_password:
            userinfo = f"{quote(self._server_user(), safe='')}:{self.client_password}"
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "application_name"]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))

    def stop(self, timeout: float = PROXY_STOP_TIMEOUT) -> int | None:
        """SIGTERM, a bounded wait for the drain, then SIGKILL; the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        return proc.returncode


class DataApiProcess(ProxyProcess):
    """``fleetpool data-api`` in front of the target, for the data-api strategy."""

    marker = "fleetpool data API listening on "
    key_id = "fleet-data-api"

    def __init__(self, upstream: str, pool_size: int, log: Path) -> None:
        super().__init__(upstream, pool_size, log)
        self.secret = uuid.uuid4().hex

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "fleetpool.cli", "data-api", "--listen", "127.0.0.1:0",
            "--upstream", self.upstream, "--pool-size", str(self.pool_size),
            "--access-key", f"{self.key_id}:{self.secret}", "--log-level", "warning",
        ]  # fmt: skip

    def client_env(self) -> dict[str, str]:
        return {
            "FLEET_DATA_API_URL": f"http://127.0.0.1:{self.port}",
            "FLEET_DATA_API_KEY": self.key_id,
            "FLEET_DATA_API_SECRET": self.secret,
        }


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return False
    return True


def _tail(path: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "no output"
    return "no output"


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
    if strategy in POSTGRES_ONLY and target.engine != "postgres":
        raise StrategySkipped(
            f"strategy {strategy!r} skipped: it runs on PostgreSQL only, and this "
            f"database is {target.version or target.engine}"
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
    budget = None
    extras: list[Callable[[], dict[str, Any]]] = []
    if strategy == "fleetpool":
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
    proxy = None
    if strategy == "proxy":
        # Pool = the fleet's limit, as the fleetpool budget and the counter get:
        # open_target already left the observer's slot out of it, and nothing
        # else (no reaper) connects on the fleet's behalf.
        pool_app = f"{app_prefix}:proxy-pool"
        proxy = ProxyProcess(with_app_name(target.dsn, pool_app), limit, logs / "proxy.log")
        proxy.start()
        env["FLEET_PROXY_DSN"] = proxy.client_dsn()
        env["FLEET_PROXY_APP_NAME"] = pool_app
    elif strategy == "data-api":
        # The endpoint owns a pool of the fleet's limit; containers hold no session.
        proxy = DataApiProcess(target.dsn, limit, logs / "data-api.log")
        proxy.start()
        env.update(proxy.client_env())
    try:
        result = _run_fleet(
            scenario,
            target,
            strategy,
            handler,
            env,
            logs,
            limit=limit,
            app_prefix=app_prefix,
            extras=extras,
            counter_limit=counter_limit,
            progress=progress,
            stop_first=proxy.stop if proxy is not None else None,
        )
    finally:
        if proxy is not None:
            proxy.stop()
        if budget is not None:
            budget.close()
    if proxy is not None and proxy.proc is not None:
        result["proxy"] = {
            "pid": proxy.proc.pid,
            "port": proxy.port,
            "pool_size": proxy.pool_size,
            "exit_status": proxy.proc.returncode,
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
            _cleanup(target, app_prefix, sessions)
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
        "scenario": _scenario_dict(scenario),
        "database": target_info,
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "wall_seconds": round(time.monotonic() - started, 1),
        "strategies": results,
        "skipped": skipped,
    }


def _scenario_dict(scenario: Scenario) -> dict[str, Any]:
    d = asdict(scenario)
    d["dsn"] = redact_url(scenario.dsn) if scenario.dsn else None
    d["duration"] = scenario.duration
    d["phases"] = [
        {k: v for k, v in asdict(p).items() if v not in (0, 0.0, (), {}, None)}
        for p in scenario.phases
    ]
    return d
