"""Storm control: a cold start of many containers logs in at the fleet's connect rate.

Thirty containers (threads with their own Database and Redis budget handle)
start at once. With ``connect_rate`` their logins are spread by the schedule
kept in Redis; the server's own record (pg_stat_activity.backend_start of the
fleet's sessions) must never show more than ``burst + rate`` sessions started
in any one-second window. A run without the cap is the contrast.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import psycopg
import pytest

import fleetpool
from tests.integration.client.helpers import one

CONTAINERS = 30
RATE = 10.0
BURST = 2


def _cold_start(dsn: str, redis_url: str, name: str, rate: float | None) -> list[datetime]:
    fleetpool.open_budget(redis_url, name).configure(limit=CONTAINERS)
    go = threading.Event()
    dbs: list[fleetpool.Database] = []
    errors: list[BaseException] = []

    def container() -> None:
        db = fleetpool.Database(
            dsn,
            budget=redis_url,
            budget_name=name,
            max_wait=10,
            handle_signals=False,
            reap_threshold=None,
            connect_rate=rate,
            connect_burst=BURST,
        )
        dbs.append(db)
        go.wait(10)
        try:
            with db.connection() as conn:
                assert one(conn, "SELECT 1") == 1
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=container) for _ in range(CONTAINERS)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    go.set()
    for t in threads:
        t.join(30)
    assert errors == []
    prefix = dbs[0].tag_prefix
    with psycopg.connect(dsn, autocommit=True) as conn:
        starts = [
            row[0]
            for row in conn.execute(
                "SELECT backend_start FROM pg_stat_activity WHERE application_name LIKE %s",
                (prefix + "%",),
            )
        ]
    for db in dbs:
        db.close()
    return sorted(starts)


def _busiest_second(starts: list[datetime]) -> int:
    return max(sum(1 for s in starts if 0 <= (s - t).total_seconds() < 1.0) for t in starts)


def test_the_connect_rate_holds_on_the_server(
    pg_server_factory: Any, redis_url: str, unique_name: str
) -> None:
    server = pg_server_factory(max_connections=2 * CONTAINERS + 10)
    capped = _cold_start(server.dsn, redis_url, unique_name + "-capped", RATE)
    free = _cold_start(server.dsn, redis_url, unique_name + "-free", None)
    assert len(capped) == len(free) == CONTAINERS
    peak, peak_free = _busiest_second(capped), _busiest_second(free)
    span = (capped[-1] - capped[0]).total_seconds()
    print(
        f"\nconnect storm: {CONTAINERS} cold starts, connect_rate={RATE:g}/s burst={BURST}: "
        f"busiest second {peak} logins (cap {BURST + RATE:g}), spread over {span:.2f}s; "
        f"without the cap: busiest second {peak_free}"
    )
    assert peak <= BURST + RATE
    assert peak_free > BURST + RATE


def test_no_slot_within_max_wait_is_a_clear_refusal(redis_url: str, unique_name: str) -> None:
    budget = fleetpool.open_budget(redis_url, unique_name)
    try:
        assert budget.reserve_connect(1.0, 1, within=0) == 0.0
        with pytest.raises(fleetpool.NoConnectionsLeft) as err:
            budget.reserve_connect(1.0, 1, within=0.1, function="api")
        assert err.value.reason == "connect_rate" and "api" in str(err.value)
        with pytest.raises(fleetpool.ConfigError):
            budget.reserve_connect(0, 1)
    finally:
        budget.close()


def test_connect_rate_needs_a_store_that_keeps_the_schedule(tmp_path: Any) -> None:
    budget = fleetpool.open_budget(f"sqlite:///{tmp_path}/b.db", "storm")
    with pytest.raises(fleetpool.ConfigError, match="connect_rate"):
        budget.reserve_connect(5.0, 1, within=1)
    with pytest.raises(fleetpool.ConfigError, match="connect_rate"):
        fleetpool.Database("postgresql://u@127.0.0.1/db", connect_rate=5)
