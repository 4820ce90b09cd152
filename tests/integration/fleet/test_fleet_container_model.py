"""Emulator fidelity: real processes, global section once, serial invocations,
frozen containers keep their idle sessions, killed ones leave real zombies."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fleetpool.fleet.embedded import EmbeddedPostgres
from fleetpool.fleet.emulator import Fleet, FunctionConfig
from fleetpool.fleet.traffic import Arrival

HANDLERS = "tests.integration.fleet.handlers"


@pytest.fixture(scope="module")
def pg() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(max_connections=10) as server:
        yield server


def make_fleet(tmp_path: Path, pg: EmbeddedPostgres, handler: str = "handler", **kw: Any) -> Fleet:
    fn = FunctionConfig(handler=f"{HANDLERS}:{handler}", **{"timeout": 5.0, **kw})
    env = {"FLEET_TEST_INIT_FILE": str(tmp_path / "init.txt"), "FLEET_DSN": pg.dsn}
    return Fleet(fn, env, app_prefix="fleet:test")


def inits(tmp_path: Path) -> list[str]:
    p = tmp_path / "init.txt"
    return p.read_text().split() if p.exists() else []


def proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def sessions(pg: EmbeddedPostgres) -> list[tuple[int, str, str]]:
    with psycopg.connect(pg.admin_dsn, autocommit=True) as c:
        return [
            (int(r[0]), r[1], r[2])
            for r in c.execute(
                "SELECT pid, application_name, state FROM pg_stat_activity"
                " WHERE application_name LIKE 'fleet:test:%'"
            ).fetchall()
        ]


def wait_for(cond: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


def test_global_section_runs_once_per_container(tmp_path: Path, pg: EmbeddedPostgres) -> None:
    fleet = make_fleet(tmp_path, pg)
    try:
        recs = [fleet.invoke(Arrival(i, 0.0, {"think": 0.01})) for i in range(5)]
        assert all(r.ok for r in recs)
        assert [r.cold for r in recs] == [True, False, False, False, False]
        assert len({r.container for r in recs}) == 1
        assert len(inits(tmp_path)) == 1
        # The module's globals survive between invocations of one container.
        assert [r.result["calls"] for r in recs] == [1, 2, 3, 4, 5]
        assert len({r.result["pid"] for r in recs}) == 1
        # Two at once need two containers: the second one runs its own global section.
        fleet.run([Arrival(10, 0.0, {"think": 0.3}), Arrival(11, 0.0, {"think": 0.3})])
        assert len(inits(tmp_path)) == 2
    finally:
        fleet.shutdown()


def test_invocations_are_serial_per_container(tmp_path: Path, pg: EmbeddedPostgres) -> None:
    fleet = make_fleet(tmp_path, pg, concurrency=3)
    arrivals = [Arrival(i, i * 0.05, {"think": 0.2}) for i in range(12)]
    try:
        recs = fleet.run(arrivals)
    finally:
        fleet.shutdown()
    ok = [r for r in recs if r.ok]
    assert ok and len({r.container for r in ok}) <= 3
    by_container: dict[str, list[tuple[float, float]]] = {}
    for r in ok:
        assert r.container is not None
        by_container.setdefault(r.container, []).append((r.start, r.end))
    for spans in by_container.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end - 1e-3  # never two at once in one container
    assert len(inits(tmp_path)) == len(by_container)
    assert any(r.reason == "throttled" for r in recs)  # 4 s of work, 3 slots, 12 arrivals


def test_context_object(tmp_path: Path, pg: EmbeddedPostgres) -> None:
    fleet = make_fleet(tmp_path, pg, name="orders", timeout=2.0)
    try:
        rec = fleet.invoke(Arrival(0, 0.0, {}))
        assert rec.ok
        assert rec.result["function_name"] == "orders"
        assert len(rec.result["request_id"]) == 36
        assert 1000 < rec.result["remaining_ms"] <= 2000
        assert rec.result["pid"] == fleet.containers["c001"].pid != os.getpid()
    finally:
        fleet.shutdown()


def test_frozen_container_keeps_its_idle_session(tmp_path: Path, pg: EmbeddedPostgres) -> None:
    fleet = make_fleet(tmp_path, pg, handler="connect_handler", idle_lifetime=60)
    try:
        first = fleet.invoke(Arrival(0, 0.0, {}))
        assert first.ok and first.connects == 1
        container = fleet.containers["c001"]
        # SIGSTOPped between invocations (the stop lands asynchronously).
        assert wait_for(lambda: proc_state(container.pid) == "T", 2.0)
        time.sleep(0.5)
        rows = sessions(pg)
        assert [(app, state) for _, app, state in rows] == [("fleet:test:c001", "idle")]
        second = fleet.invoke(Arrival(1, 0.0, {}))
        assert second.ok and second.connects == 0  # the same warm connection
        assert sessions(pg)[0][0] == rows[0][0]
    finally:
        fleet.shutdown()
    assert wait_for(lambda: not sessions(pg))


def test_reclaimed_container_leaves_a_real_zombie(tmp_path: Path, pg: EmbeddedPostgres) -> None:
    fleet = make_fleet(tmp_path, pg, handler="connect_handler", idle_lifetime=0.5)
    try:
        rec = fleet.invoke(Arrival(0, 0.0, {}))
        assert rec.ok
        pid = fleet.containers["c001"].pid
        assert wait_for(lambda: fleet.view()["c001"].state.value == "dead")
        assert wait_for(lambda: proc_state(pid) in (None, "Z"))
        time.sleep(1.0)
        rows = sessions(pg)
        assert len(rows) == 1 and rows[0][2] == "idle"  # the process is gone; its session is not
        assert fleet.custodian is not None and fleet.custodian.held("c001") == 1
        with psycopg.connect(pg.admin_dsn, autocommit=True) as c:
            c.execute("SELECT pg_terminate_backend(%s)", (rows[0][0],))
        # The server ended it: the emulator drops its copy of the socket.
        assert wait_for(lambda: fleet.custodian is not None and fleet.custodian.held() == 0)
    finally:
        fleet.shutdown()


def test_without_linger_the_kernel_closes_a_killed_containers_session(
    tmp_path: Path, pg: EmbeddedPostgres
) -> None:
    fleet = make_fleet(tmp_path, pg, handler="connect_handler", idle_lifetime=0.3, linger=False)
    try:
        assert fleet.invoke(Arrival(0, 0.0, {})).ok
        assert wait_for(lambda: fleet.view()["c001"].state.value == "dead")
        assert wait_for(lambda: not sessions(pg))
    finally:
        fleet.shutdown()


def test_timeout_kills_the_container(tmp_path: Path, pg: EmbeddedPostgres) -> None:
    fleet = make_fleet(tmp_path, pg, timeout=0.5)
    try:
        rec = fleet.invoke(Arrival(0, 0.0, {"think": 30}))
        assert (rec.ok, rec.reason) == (False, "timeout")
        assert rec.end - rec.start < 2.0
        assert fleet.view()[rec.container or ""].state.value == "dead"
        again = fleet.invoke(Arrival(1, 0.0, {}))
        assert again.ok and again.cold  # a new container
        assert len(inits(tmp_path)) == 2
    finally:
        fleet.shutdown()


def test_sigterm_gives_the_handler_its_shutdown_hook(tmp_path: Path, pg: EmbeddedPostgres) -> None:
    fleet = make_fleet(tmp_path, pg, idle_lifetime=0.3, kill_signal="SIGTERM", grace=2.0)
    try:
        assert fleet.invoke(Arrival(0, 0.0, {})).ok
        marker = Path(str(tmp_path / "init.txt") + ".shutdown")
        assert wait_for(marker.exists)
    finally:
        fleet.shutdown()


def test_init_error_fails_the_invocation(tmp_path: Path, pg: EmbeddedPostgres) -> None:
    fn = FunctionConfig(handler="no_such_module_xyz:handler", timeout=2.0)
    fleet = Fleet(fn, {}, app_prefix="fleet:test")
    try:
        rec = fleet.invoke(Arrival(0, 0.0, {}))
        assert not rec.ok and rec.init_failed and "no_such_module_xyz" in rec.error
        assert os.environ.get("FLEET_TEST_INIT_FILE") is None
    finally:
        fleet.shutdown()
