"""The ``proxy`` strategy: a fleet behind fleetpool's proxy, against real servers.

The proxy is a real ``python -m fleetpool.proxy`` process, on PostgreSQL and on
MariaDB; the database's own view (``pg_stat_activity`` or the process list, sampled
here independently of the emulator's observer) is the judge of how many sessions
the fleet held.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from fleetpool.fleet.emulator import FunctionConfig
from fleetpool.fleet.run import run_scenario, run_strategy
from fleetpool.fleet.scenario import Scenario
from fleetpool.fleet.target import Target
from fleetpool.fleet.traffic import Phase, Workload
from fleetpool_testing import MariaDBServer, PostgresServer, free_port

pytestmark = pytest.mark.slow

# superuser_reserved_connections is 0. The fleet's limit (the pool) is set below
# what the server allows: the emulator's observer and this test's own watcher
# need a slot each, and a pool squeezed by them would never show its cap.
MAX_CONNECTIONS = 7
POOL = 4


def busy(dsn: str | None, *, strategies: tuple[str, ...] = ("proxy",)) -> Scenario:
    # A burst of 16 invocations, each holding a server session for 0.8 s (the
    # query): three times the pool in flight, so the proxy must queue
    # transactions and its cap is what keeps the server below the limit. Then a
    # steady trickle reuses the warm containers' connections.
    return Scenario(
        name="t",
        strategies=strategies,
        dsn=dsn,
        limit=POOL,
        lease_ttl=1.0,
        function=FunctionConfig(handler="", timeout=10.0, concurrency=20, idle_lifetime=2.0),
        workload=Workload(think=0.05, query="SELECT pg_sleep(0.8)"),
        phases=(
            Phase("harness", 1.0, iterations=16, spread=0.5),
            Phase("steady", 2.0, rate=4.0),
        ),
    )


def proxy_processes(upstream_port: int, scheme: bytes = b"postgresql://") -> list[int]:
    """Pids of live (non-zombie) fleetpool proxies whose upstream is on this port."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"fleetpool.proxy" in argv and state != "Z":
            upstream = next((a for a in argv if a.startswith(scheme)), b"")
            if f":{upstream_port}/".encode() in upstream:
                found.append(int(entry.name))
    return found


class SessionWatch:
    """Counts the fleet's sessions in pg_stat_activity every 20 ms, in a thread."""

    def __init__(self, dsn: str, prefix: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.prefix = prefix
        self.peak = 0
        self.apps: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            rows = self.conn.execute(
                "SELECT application_name FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND application_name LIKE %s",
                (self.prefix + "%",),
            ).fetchall()
            self.peak = max(self.peak, len(rows))
            self.apps.update(r[0] for r in rows)
            self._stop.wait(0.02)

    def __enter__(self) -> SessionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.conn.close()


@pytest.fixture(params=["trust", "scram-sha-256"])
def small_pg(request: pytest.FixtureRequest, pg_server_factory: Any) -> Iterator[PostgresServer]:
    # With a password the proxy authenticates the containers by SCRAM as the
    # server would; without one it must let them in as the server does.
    password = None if request.param == "trust" else "s3cret p@ss/word"
    yield pg_server_factory(max_connections=MAX_CONNECTIONS, auth=request.param, password=password)


def test_proxy_strategy_multiplexes_the_fleet_within_the_pool(small_pg: PostgresServer) -> None:
    dsn, port = small_pg.dsn, small_pg.port
    with SessionWatch(dsn, "fleet:proxy:") as watch:
        run = run_scenario(busy(dsn))
    (result,) = run["strategies"]
    s = result["summary"]
    pool = POOL
    assert result["strategy"] == "proxy"
    assert s["limit"] == pool
    assert s["invocations"] > 20
    assert s["failed"] == 0, s["failed_by_reason"]
    assert s["succeeded"] == s["invocations"]
    # More containers held client connections than the server ever had sessions.
    containers = {i["container"] for i in result["invocations"]}
    assert len(containers) > pool
    # One connection per container, opened on its first invocation and reused.
    assert s["connects"] == len(containers) < s["invocations"]
    # The burst filled the pool, and the server never saw one session more.
    assert watch.peak == pool
    assert max(result["series"]["server_fleet"]) <= pool
    assert s["peak_server_connections"] <= pool + 1  # + this test's watcher
    # Only the proxy's own sessions reached the server, never a container's.
    assert watch.apps == {"fleet:proxy:proxy-pool"}
    assert s["zombies_end"] == 0
    # The proxy drained and exited on SIGTERM, and nothing of it is left.
    info = result["proxy"]
    assert info["pool_size"] == pool
    assert info["exit_status"] == 0
    assert not Path(f"/proc/{info['pid']}").exists()
    assert proxy_processes(port) == []
    assert run["skipped"] == []


def test_proxy_is_stopped_when_the_run_fails(small_pg: PostgresServer, tmp_path: Path) -> None:
    dsn, port = small_pg.dsn, small_pg.port
    # Nothing listens on the observer's port: the run fails after the proxy started.
    target = Target(
        dsn=dsn,
        admin_dsn=f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
        engine="postgresql",
        limit=POOL,
        embedded=False,
    )
    with pytest.raises(psycopg.OperationalError):
        run_strategy(busy(dsn), target, "proxy", tmp_path, log_dir=tmp_path / "logs")
    assert "listening on" in (tmp_path / "logs" / "proxy" / "proxy.log").read_text()
    assert proxy_processes(port) == []


@pytest.fixture(params=["no password", "password"])
def small_mariadb(
    request: pytest.FixtureRequest, mysql_server_factory: Any
) -> Iterator[tuple[MariaDBServer, str]]:
    """A MariaDB and the DSN of a plain user (``fleet``) whose sessions the test counts.
    Without a password the proxy gives the containers a one-run secret of its own."""
    server = mysql_server_factory(max_connections=10)
    password = "" if request.param == "no password" else "s3cret p@ss/word"
    server.execute("CREATE USER 'fleet'@'127.0.0.1' IDENTIFIED BY %s", (password,))
    server.execute("GRANT ALL ON *.* TO 'fleet'@'127.0.0.1'")
    auth = f":{quote(password, safe='')}" if password else ""
    yield server, f"mysql://fleet{auth}@127.0.0.1:{server.port}/{server.database}"


def test_proxy_strategy_multiplexes_the_fleet_on_mariadb(
    small_mariadb: tuple[MariaDBServer, str], tmp_path: Path
) -> None:
    server, dsn = small_mariadb
    # Shorter queries than on PostgreSQL and room for more containers: the burst still
    # needs twice the pool, and no invocation is throttled while cold starts are slow
    # on a loaded machine (the pool, not the function's concurrency, is under test).
    scenario = replace(
        busy(dsn),
        workload=Workload(think=0.05, query="SELECT SLEEP(0.5)"),
        function=replace(busy(dsn).function, concurrency=40),
    )
    # The observer looks as root, so every session of the user ``fleet`` is the proxy's.
    target = Target(dsn, server.dsn, "mysql", POOL, False)
    peak = 0
    users: set[str] = set()
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        conn = server.connect()
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    cur.execute(
                        "SELECT USER FROM information_schema.PROCESSLIST WHERE USER = 'fleet'"
                    )
                    rows = cur.fetchall()
                    peak = max(peak, len(rows))
                    users.update(r[0] for r in rows)
                    stop.wait(0.02)
        finally:
            conn.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = run_strategy(scenario, target, "proxy", tmp_path, log_dir=tmp_path / "logs")
    finally:
        stop.set()
        watcher.join(5)
    s = result["summary"]
    assert s["invocations"] > 20
    assert s["failed"] == 0, s["failed_by_reason"]
    containers = {i["container"] for i in result["invocations"]}
    assert len(containers) > POOL
    assert s["connects"] == len(containers) < s["invocations"]
    # The burst filled the pool, and the server never saw one session more.
    assert peak == POOL
    assert max(result["series"]["server_fleet"]) <= POOL
    info = result["proxy"]
    assert info["pool_size"] == POOL
    assert info["exit_status"] == 0
    assert proxy_processes(server.port, b"mysql://") == []


def test_demo_runs_the_proxy_strategy_on_mariadb(mysql_server_factory: Any, tmp_path: Path) -> None:
    server = mysql_server_factory(max_connections=10)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetpool.fleet",
            "demo",
            "--dsn",
            server.dsn,
            "--strategies",
            "proxy",
            "--duration",
            "12",
            "--out",
            str(tmp_path / "r.html"),
            "--json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    assert "skipped:" not in out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["skipped"] == []
    (result,) = report["strategies"]
    s = result["summary"]
    assert s["invocations"] > 0
    assert s["failed"] == 0, s["failed_by_reason"]
    # The server's own count (the observer never counts itself) stays within the pool.
    assert 0 < s["peak_server_connections"] <= result["proxy"]["pool_size"]
