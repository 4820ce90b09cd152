"""Many processes, random SIGKILLs: live leases never exceed the limit.

The check is independent of the budget's own bookkeeping. Each worker logs the
moment after ``acquire`` returned and the moment before it called ``release``;
a killed worker's lease ends at its ``expires_at``. Those intervals lie inside
each lease's true lifetime, so if the budget ever let more than ``limit`` leases
live at once, more than ``limit`` logged intervals would overlap.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import fleetpool

WORKER = Path(__file__).parent / "worker.py"
STORES = ["sqlite", "redis"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/stress.db"
    return str(request.getfixturevalue("redis_url"))


def spawn(
    url: str, name: str, log: Path, seconds: float, hold_ms: int, ttl: float, *extra: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(WORKER),
            url,
            name,
            str(log),
            str(seconds),
            str(hold_ms),
            str(ttl),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def intervals(logs: list[Path], killed_at: dict[str, float]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for log in logs:
        opened: dict[str, tuple[float, float]] = {}
        if not log.exists():  # killed before it wrote anything
            continue
        for line in log.read_text().splitlines():
            parts = line.split()
            if parts[0] == "A":
                opened[parts[1]] = (float(parts[2]), float(parts[3]))
            elif parts[0] == "R" and parts[1] in opened:
                start, _ = opened.pop(parts[1])
                out.append((start, float(parts[2])))
        # Leases of a killed worker live until they expire.
        for start, expires in opened.values():
            out.append((start, expires - 0.05))
    return out


def max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, e in spans if e > s] + [(e, -1) for s, e in spans if e > s])
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


@pytest.mark.slow
def test_many_processes_with_random_kills_never_exceed_the_limit(
    store: str, tmp_path: Path
) -> None:
    name = f"stress-{uuid.uuid4().hex[:8]}"
    limit = 4
    budget = fleetpool.open_budget(store, name)
    budget.configure(limit=limit, functions={"api": (1, 4), "jobs": (0, 3)})
    rng = random.Random(7)
    logs: list[Path] = []
    procs: list[subprocess.Popen[bytes]] = []
    killed_at: dict[str, float] = {}
    run_for = 6.0
    for i in range(8):
        log = tmp_path / f"w{i}.log"
        logs.append(log)
        procs.append(spawn(store, name, log, run_for, 20, 1.5))
    start = time.monotonic()
    kills = 0
    # Kill a random worker now and then, and start a replacement in its place.
    while time.monotonic() - start < run_for - 1 and kills < 6:
        time.sleep(rng.uniform(0.4, 0.9))
        victim = rng.randrange(len(procs))
        if procs[victim].poll() is None:
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait(5)
            kills += 1
            log = tmp_path / f"w{len(logs)}.log"
            logs.append(log)
            procs.append(spawn(store, name, log, run_for - (time.monotonic() - start), 20, 1.5))
    for p in procs:
        try:
            p.wait(timeout=run_for + 15)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hang is a failure
            p.kill()
            pytest.fail("a worker hung")
    for p in procs:
        if p.returncode not in (0, -signal.SIGKILL):
            err = p.stderr.read().decode() if p.stderr else ""
            pytest.fail(f"worker failed ({p.returncode}): {err[-2000:]}")
    spans = intervals(logs, killed_at)
    grants = len(spans)
    assert kills >= 3
    assert grants > 200, f"only {grants} grants: the test did not exercise the budget"
    assert max_overlap(spans) <= limit
    # Everything the killed workers held comes back once their leases expire.
    deadline = time.monotonic() + 5
    while budget.snapshot().in_use and time.monotonic() < deadline:
        time.sleep(0.1)
    assert budget.snapshot().in_use == 0
    budget.close()


def test_capacity_of_a_killed_process_returns_within_ttl(store: str, tmp_path: Path) -> None:
    name = f"crash-{uuid.uuid4().hex[:8]}"
    budget = fleetpool.open_budget(store, name)
    budget.configure(limit=2)
    ttl = 2.0
    log = tmp_path / "crash.log"
    holders = [spawn(store, name, log, 30, 0, ttl, "hold-forever") for _ in range(2)]
    deadline = time.monotonic() + 20
    while budget.snapshot().in_use < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert budget.snapshot().in_use == 2
    with pytest.raises(fleetpool.NoConnectionsLeft):
        budget.acquire(function="api", ttl=5)
    for p in holders:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(5)
    killed = time.monotonic()
    # The next waiter is granted as soon as the dead process's leases expire.
    lease = budget.acquire(function="api", ttl=5, wait=ttl + 3)
    assert time.monotonic() - killed <= ttl + 1.0
    budget.release(lease)
    # The other dead holder's lease may run out a moment later; then nothing is held.
    while budget.snapshot().in_use and time.monotonic() - killed < ttl + 2:
        time.sleep(0.05)
    assert budget.snapshot().in_use == 0
    budget.close()
