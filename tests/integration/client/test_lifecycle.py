"""The container lifecycle with real processes: freeze (SIGSTOP) past the lease, crash
(SIGKILL), and shutdown (SIGTERM) -- capacity and server sessions come back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fleetpool
from tests.integration.client.helpers import admin

HERE = Path(__file__).resolve().parent


class Container:
    def __init__(
        self, dsn: str, budget_url: str, budget_name: str, ttl: float, flavour: str
    ) -> None:
        env = dict(os.environ)
        src = str(HERE.parents[2] / "src")
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "container.py"),
                *(dsn, budget_url, budget_name, str(ttl), flavour),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.read() == "ready"

    def read(self, timeout: float = 20.0) -> str:
        import selectors

        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError("container did not answer in time")
        return self.proc.stdout.readline().strip()

    def invoke(self) -> tuple[int, str]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("q\n")
        self.proc.stdin.flush()
        line = self.read()
        assert line.startswith("ok "), line
        _, sid, lease = line.split()
        return int(sid), lease

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def containers(flavour: str) -> Iterator[Any]:
    """Containers running a Database, or an AsyncDatabase (the ``flavour`` parameter)."""
    made: list[Container] = []

    def make(*args: Any) -> Container:
        c = Container(*args, flavour)
        made.append(c)
        return c

    yield make
    for c in made:
        if c.proc.poll() is None:
            os.kill(c.proc.pid, signal.SIGCONT)
        c.close()


def _session_exists(dsn: str, sid: int) -> bool:
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
        if dsn.startswith("postgres")
        else "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = %s"
    )
    return bool(admin(dsn, sql, (sid,))[0][0])


def _eventually(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def budget(tmp_path: Path, unique_name: str) -> Iterator[tuple[str, str, fleetpool.Budget]]:
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    b = fleetpool.open_budget(url, unique_name)
    b.configure(limit=5)
    yield url, unique_name, b
    b.close()


@pytest.mark.slow
def test_frozen_container_loses_lease_and_session_then_recovers(
    dsn: str, budget: Any, containers: Any
) -> None:
    url, name, b = budget
    ttl = 2.0  # the server closes idle sessions after 1 s
    c = containers(dsn, url, name, ttl)
    sid, lease = c.invoke()
    assert [x.id for x in b.leases()] == [lease]
    c.signal(signal.SIGSTOP)
    _eventually(lambda: not _session_exists(dsn, sid), 5.0, "server kept the frozen session")
    _eventually(lambda: b.leases() == [], ttl + 1.0, "the frozen container's lease lived on")
    c.signal(signal.SIGCONT)
    sid2, lease2 = c.invoke()
    assert sid2 != sid and lease2 != lease
    assert [x.id for x in b.leases()] == [lease2]


@pytest.mark.slow
def test_killed_container_gives_capacity_and_session_back(
    dsn: str, budget: Any, containers: Any
) -> None:
    url, name, b = budget
    ttl = 2.0
    c = containers(dsn, url, name, ttl)
    sid, _ = c.invoke()
    c.signal(signal.SIGKILL)
    start = time.monotonic()
    _eventually(lambda: b.leases() == [], ttl + 1.0, "lease of a killed container lived on")
    _eventually(lambda: not _session_exists(dsn, sid), ttl + 1.0, "session lived on")
    assert time.monotonic() - start <= ttl + 1.0


def test_sigterm_closes_and_releases_at_once(dsn: str, budget: Any, containers: Any) -> None:
    url, name, b = budget
    c = containers(dsn, url, name, 60.0)  # long lease: only the release can explain it
    sid, _ = c.invoke()
    c.signal(signal.SIGTERM)
    start = time.monotonic()
    assert c.proc.wait(timeout=5) == -signal.SIGTERM  # the default action still happens
    assert b.leases() == []
    _eventually(lambda: not _session_exists(dsn, sid), 2.0, "session survived SIGTERM")
    assert time.monotonic() - start < 2.0
