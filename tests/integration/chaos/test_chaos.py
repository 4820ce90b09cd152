"""The chaos suite: a fleet on a small budget through freezes, kills and restarts.

Ten container processes share a Redis budget of 4 against a real PostgreSQL
(max_connections 12). Each one writes a row per invocation and holds its
connection about 30% of the time (a demand of ~3 of the 4). For about 25
seconds, on a fixed schedule: containers freeze themselves between
invocations (thawed by the test 0.3-2 s later) and are SIGKILLed (a new one
takes each one's place), the database restarts, Redis restarts (append-only
file on: a store that forgets its leases could grant them twice) and Redis
freezes (SIGSTOP) for 1.5 s. Three more containers go through a fleetpool proxy
(pool of 2), which is SIGKILLed and restarted on its port under them. Then
every container freezes for good, as a fleet does after its last invocation.

Checked from independent records -- the server's pg_stat_activity sampled
every 10 ms, the rows in the table, the containers' own logs and the budget:

* the fleet's live sessions never exceed the budget's limit;
* every write a container saw committed is in the table, none twice;
* no session is left once the lease TTL has passed, and the budget is back to 0;
* no invocation took longer than its deadline.

Bounded: every wait has a timeout; everything runs on loopback ports.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import fleetpool
from fleetpool_testing import RedisServer, free_port

CONTAINERS = 10
LIMIT = 4
MAX_CONNECTIONS = 12
CHAOS_SECONDS = 25.0
LEASE_TTL = 5.0
#: max_wait 2 + connect_timeout 2 + a statement and a few store timeouts (0.5 s).
DEADLINE = 6.0
HERE = Path(__file__).resolve().parent


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


class Fleet:
    def __init__(self, dsn: str, budget_url: str, name: str, tmp: Path) -> None:
        self.dsn, self.budget_url, self.name, self.tmp = dsn, budget_url, name, tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.records: list[Path] = []
        self.kills = 0
        self.freezes = 0
        #: The containers behind the proxy (never killed: the proxy is).
        self.proxied: list[int] = []

    def start_one(self, dsn: str | None = None, budget_url: str | None = None) -> None:
        n = len(self.records)
        path = self.tmp / f"container-{n}.jsonl"
        self.records.append(path)
        self.procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "container.py"),
                    dsn or self.dsn,
                    budget_url or self.budget_url,
                    self.name,
                    str(path),
                    str(n),
                ],
                stdout=subprocess.DEVNULL,
                stderr=open(self.tmp / f"container-{n}.err", "wb"),  # noqa: SIM115
            )
        )

    def live(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def kill_one(self, rng: random.Random) -> None:
        live = [p for i, p in enumerate(self.procs) if i not in self.proxied and p.poll() is None]
        if live:
            victim = rng.choice(live)
            victim.kill()
            victim.wait(5)
            self.kills += 1
            self.start_one()

    def thaw_frozen(self, rng: random.Random, frozen_since: dict[int, float]) -> None:
        now = time.monotonic()
        for p in self.live():
            if _state(p.pid) == "T":
                until = frozen_since.setdefault(p.pid, now + rng.uniform(0.3, 2.0))
                if now >= until:
                    os.kill(p.pid, signal.SIGCONT)
                    del frozen_since[p.pid]
                    self.freezes += 1

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)


class Proxy:
    """``python -m fleetpool.proxy`` on a fixed loopback port, killed and restarted."""

    def __init__(self, upstream: str, tmp: Path) -> None:
        self.upstream, self.port, self.log = upstream, free_port(), tmp / "proxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "fleetpool.proxy",
                    "--listen", f"127.0.0.1:{self.port}", "--upstream", self.upstream,
                    "--pool-size", "2", "--auth-method", "trust",
                ],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.dsn, connect_timeout=1, autocommit=True):
                    return
            except psycopg.Error:
                time.sleep(0.1)
        raise AssertionError(f"the proxy did not start: {self.log.read_text()[-500:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _fleet_sessions(conn: psycopg.Connection[Any], prefix: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s", (prefix + "%",)
    ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.slow
def test_the_fleet_through_chaos(pg_server_factory: Any, tmp_path: Path, unique_name: str) -> None:
    rng = random.Random(12)
    pg = pg_server_factory(max_connections=MAX_CONNECTIONS)
    pg.execute("CREATE TABLE chaos_writes (id text NOT NULL, container text NOT NULL)")
    # Append-only with fsync on every write: a restarted store still knows its leases.
    redis_server = RedisServer(settings={"appendonly": "yes", "appendfsync": "always"}).start()
    budget_url = f"{redis_server.url}?timeout=0.5&on_unavailable=fail_closed"
    name = unique_name
    budget = fleetpool.open_budget(budget_url, name)
    budget.configure(limit=LIMIT)
    prefix = fleetpool.Database(pg.dsn, budget=budget_url, budget_name=name).tag_prefix
    fleet = Fleet(pg.dsn, budget_url, name, tmp_path)
    proxy = Proxy(pg.dsn, tmp_path)
    proxy.start()
    peak = [0]
    samples = [0]
    sampling = threading.Event()

    def monitor() -> None:
        conn: psycopg.Connection[Any] | None = None
        while not sampling.is_set():
            try:
                if conn is None:
                    # The monitor's own session is not the fleet's: it never counts.
                    conn = psycopg.connect(pg.dsn, autocommit=True, connect_timeout=2)
                peak[0] = max(peak[0], _fleet_sessions(conn, prefix))
                samples[0] += 1
            except psycopg.Error:
                conn = None
                time.sleep(0.05)
            time.sleep(0.01)
        if conn is not None:
            conn.close()

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    events: collections.Counter[str] = collections.Counter()
    try:
        for _ in range(CONTAINERS):
            fleet.start_one()
        for _ in range(3):
            fleet.start_one(proxy.dsn, "-")
            fleet.proxied.append(len(fleet.procs) - 1)
        schedule = {
            5.0: "database restart",
            10.0: "redis restart",
            12.5: "proxy kill and restart",
            15.0: "redis freeze",
            20.0: "database restart",
        }
        start = time.monotonic()
        next_kill = start + 3.0
        frozen_since: dict[int, float] = {}
        while (elapsed := time.monotonic() - start) < CHAOS_SECONDS:
            for at in [t for t in schedule if t <= elapsed]:
                event = schedule.pop(at)
                events[event] += 1
                if event == "database restart":
                    pg.restart()
                elif event == "redis restart":
                    redis_server.restart()
                elif event == "proxy kill and restart":
                    proxy.kill()
                    time.sleep(0.5)
                    proxy.start()
                else:
                    redis_server.pause(1.5).join(5)
            if time.monotonic() >= next_kill:
                fleet.kill_one(rng)
                next_kill += rng.uniform(2.0, 4.0)
            fleet.thaw_frozen(rng, frozen_since)
            time.sleep(0.05)
        # The end of the traffic: every container freezes where it stands, as an
        # idle fleet does, and is never thawed; the proxy ends its pool.
        for p in fleet.live():
            os.kill(p.pid, signal.SIGSTOP)
        proxy.stop()
        time.sleep(LEASE_TTL + 1.0)
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            left = _fleet_sessions(conn, prefix)
        in_use = budget.snapshot().in_use
    finally:
        sampling.set()
        watcher.join(5)
        fleet.stop()
        proxy.kill()
        budget.close()
        redis_server.close()

    records = [
        {**json.loads(line), "proxied": i in fleet.proxied}
        for i, path in enumerate(fleet.records)
        if path.exists()
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    rows = [r[0] for r in pg.execute("SELECT id FROM chaos_writes") or []]
    in_table = collections.Counter(rows)
    committed = [r["id"] for r in records if r["committed"]]
    failures = collections.Counter(r["cause"] for r in records if not r["committed"])
    lost = [i for i in committed if i not in in_table]
    duplicated = [i for i, n in in_table.items() if n > 1]
    longest = max((r["seconds"] for r in records), default=0.0)
    figures = {
        "invocations": len(records),
        "through_proxy": sum(1 for r in records if r["proxied"]),
        "through_proxy_committed": sum(1 for r in records if r["proxied"] and r["committed"]),
        "committed": len(committed),
        "failures": dict(failures),
        "events": dict(events),
        "container_kills": fleet.kills,
        "container_freezes": fleet.freezes,
        "peak_sessions": peak[0],
        "limit": LIMIT,
        "samples": samples[0],
        "longest_invocation_s": round(longest, 2),
        "sessions_left_after_ttl": left,
        "budget_in_use_after_ttl": in_use,
        "lost": len(lost),
        "duplicated": len(duplicated),
    }
    print("\nchaos: " + json.dumps(figures))
    assert len(records) > 100 and len(committed) > 50
    assert figures["through_proxy_committed"] > 10
    assert samples[0] > 100
    assert peak[0] <= LIMIT
    assert lost == [] and duplicated == []
    assert left == 0 and in_use == 0
    assert longest <= DEADLINE
