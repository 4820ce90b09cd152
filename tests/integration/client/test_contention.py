"""More containers than the budget, total demand below it: fair handoff serves everyone.

Twelve containers (threads, each its own Database and budget handle, as in
separate processes) share a Redis budget of 6 against a real PostgreSQL. Each
holds its connection about 30% of the time, so the fleet needs ~3.6 of the 6 on
average. Without fair handoff the first six keep their leases warm and the
others starve until ``max_wait``; with it, a holder that checks in while
someone waits gives its lease away. The two runs happen in the same test and
their figures are printed (the README quotes them). Live sessions are counted
on the server from pg_stat_activity, independently of the budget.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import psycopg

import fleetpool
from fleetpool import NoConnectionsLeft
from tests.integration.client.helpers import one

CONTAINERS = 12
LIMIT = 6
HOLD = 0.03
IDLE = 0.07
SECONDS = 6.0
MAX_WAIT = 1.5


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_fleet(dsn: str, redis_url: str, name: str, *, fair_handoff: bool) -> dict[str, Any]:
    budget = fleetpool.open_budget(redis_url, name)
    budget.configure(limit=LIMIT)
    budget.close()
    stop = time.monotonic() + SECONDS
    waits: list[float] = []
    refused: list[float] = []
    other: list[BaseException] = []
    handoffs: list[int] = []
    lock = threading.Lock()
    peak = [0]
    prefix: list[str] = []

    def container(n: int) -> None:
        rng = random.Random(n)
        db = fleetpool.Database(
            dsn,
            budget=redis_url,
            budget_name=name,
            function="api",
            lease_ttl=30,
            max_wait=MAX_WAIT,
            handle_signals=False,
            reap_threshold=None,
            fair_handoff=fair_handoff,
        )
        if n == 0:
            prefix.append(db.tag_prefix)
        try:
            time.sleep(rng.uniform(0, IDLE))
            while time.monotonic() < stop:
                start = time.monotonic()
                try:
                    with db.connection() as conn:
                        waited = time.monotonic() - start
                        assert one(conn, "SELECT 1") == 1
                        time.sleep(rng.uniform(0.5, 1.5) * HOLD)
                    with lock:
                        waits.append(waited)
                except NoConnectionsLeft:
                    with lock:
                        refused.append(time.monotonic() - start)
                time.sleep(rng.uniform(0.5, 1.5) * IDLE)
        except BaseException as exc:  # reported by the test
            with lock:
                other.append(exc)
        finally:
            with lock:
                handoffs.append(db.stats.handoffs)
            db.close()

    def monitor() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while time.monotonic() < stop + 0.5:
                if prefix:
                    row = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
                        (prefix[0] + "%",),
                    ).fetchone()
                    peak[0] = max(peak[0], int(row[0]) if row else 0)
                time.sleep(0.01)

    threads = [threading.Thread(target=container, args=(n,)) for n in range(CONTAINERS)]
    watcher = threading.Thread(target=monitor)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + MAX_WAIT + 30)
    watcher.join(10)
    check = fleetpool.open_budget(redis_url, name)
    in_use = check.snapshot().in_use
    check.close()
    total = len(waits) + len(refused)
    return {
        "fair_handoff": fair_handoff,
        "invocations": total,
        "no_connections_left": len(refused),
        "failure_rate": len(refused) / total if total else 0.0,
        "p50_wait_ms": round(_percentile(waits, 0.50) * 1000, 1),
        "p99_wait_ms": round(_percentile(waits, 0.99) * 1000, 1),
        "handoffs": sum(handoffs),
        "peak_sessions": peak[0],
        "in_use_after": in_use,
        "errors": other,
    }


def test_fair_handoff_serves_a_fleet_larger_than_its_budget(
    pg_dsn: str, redis_url: str, unique_name: str
) -> None:
    without = run_fleet(pg_dsn, redis_url, unique_name + "-nofair", fair_handoff=False)
    with_ = run_fleet(pg_dsn, redis_url, unique_name + "-fair", fair_handoff=True)
    for figures in (without, with_):
        print(f"\ncontention: {CONTAINERS} containers, limit {LIMIT}, busy ~30%: " + str(figures))
        assert figures["errors"] == []
        assert figures["peak_sessions"] <= LIMIT
        assert figures["in_use_after"] == 0
    assert without["no_connections_left"] > 0
    assert without["failure_rate"] > 0.01
    assert with_["no_connections_left"] == 0
    assert with_["handoffs"] > 0
