"""More containers than max_connections: with a budget nobody sees "too many connections";
without one, the retry path waits for capacity and then fails clearly."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

import fleetpool
from tests.integration.client.helpers import one

# MariaDB never goes below 10 connections.
MAX = {"postgresql": 3, "mysql": 10}


def _server(engine: str, request: pytest.FixtureRequest) -> Any:
    if engine == "postgresql":
        return request.getfixturevalue("pg_server_factory")(max_connections=MAX[engine])
    server = request.getfixturevalue("mysql_server_factory")(max_connections=MAX[engine])
    # A plain user: root (SUPER) may open one connection beyond the limit.
    server.execute("CREATE USER 'app'@'%' IDENTIFIED BY 'pw'")
    server.execute("GRANT ALL ON test.* TO 'app'@'%'")
    return server


def _dsn(engine: str, server: Any) -> str:
    if engine == "postgresql":
        return str(server.dsn)
    return f"mysql://app:pw@{server.host}:{server.port}/test"


def _run_containers(
    dsn: str, budget: Any, invocations: int, containers: int
) -> list[BaseException]:
    errors: list[BaseException] = []

    def container(n: int) -> None:
        db = fleetpool.Database(
            dsn,
            budget=budget,
            function="api",
            lease_ttl=10,
            max_wait=20,
            mode="per_invocation",
            handle_signals=False,
            reap_threshold=None,
        )
        try:
            for _ in range(invocations):
                with db.connection() as conn:
                    assert one(conn, "SELECT 1") == 1
                    time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=container, args=(n,)) for n in range(containers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return errors


@pytest.mark.slow
def test_budget_keeps_a_crowd_below_max_connections(
    engine: str, request: pytest.FixtureRequest, unique_name: str
) -> None:
    server = _server(engine, request)
    budget = fleetpool.open_budget("memory://", unique_name)
    budget.configure(limit=MAX[engine] - 1)
    errors = _run_containers(
        _dsn(engine, server), budget, invocations=5, containers=MAX[engine] + 5
    )
    assert errors == []
    assert budget.snapshot().in_use == 0  # every lease came back


def test_without_budget_too_many_connections_is_retried_then_clear(
    engine: str, request: pytest.FixtureRequest, make_db: Any
) -> None:
    server = _server(engine, request)
    dsn = _dsn(engine, server)
    hogs = [make_db(dsn, reap_threshold=None) for _ in range(MAX[engine])]
    for hog in hogs:
        with hog.connection():
            pass
    db = make_db(dsn, max_wait=0.6, reap_threshold=None)
    start = time.monotonic()
    with pytest.raises(fleetpool.NoConnectionsLeft) as info, db.connection():
        pass
    assert 0.5 < time.monotonic() - start < 3.0
    assert db.stats.connect_retries >= 2
    assert isinstance(info.value, db.driver.operational_error)  # the driver in use
    code = getattr(info.value, "sqlstate", None) or getattr(info.value, "errno", None)
    assert code in ("53300", 1040, 1203)
    # Capacity frees up during the retries: the checkout succeeds.
    threading.Timer(0.3, hogs[0].close).start()
    db2 = make_db(dsn, max_wait=5, reap_threshold=None)
    with db2.connection() as conn:
        assert one(conn, "SELECT 1") == 1
    assert db2.stats.connect_retries >= 1


def test_empty_budget_gives_driver_flavoured_no_connections_left(
    pg_dsn: str, make_db: Any, unique_name: str
) -> None:
    budget = fleetpool.open_budget("memory://", unique_name)
    budget.configure(limit=1)
    holder = make_db(pg_dsn, budget=budget)
    with holder.connection():
        pass
    db = make_db(pg_dsn, budget=budget, max_wait=0.2)
    with pytest.raises(psycopg.OperationalError) as info, db.connection():
        pass
    assert isinstance(info.value, fleetpool.NoConnectionsLeft)
    assert info.value.limit == 1 and info.value.in_use == 1
    holder.close()
    with db.connection() as conn:
        assert one(conn, "SELECT 1") == 1


def test_warm_checkout_renews_only_past_half_ttl(
    pg_dsn: str, make_db: Any, unique_name: str
) -> None:
    budget = fleetpool.open_budget("memory://", unique_name)
    budget.configure(limit=5)
    db = make_db(pg_dsn, budget=budget, lease_ttl=1.0)
    for _ in range(5):
        with db.connection():
            pass
    assert (db.stats.acquires, db.stats.renewals) == (1, 0)
    time.sleep(0.6)
    with db.connection():
        pass
    assert db.stats.renewals == 1
    lease = db.lease
    assert lease is not None and lease.meta["tag"] == db.tag
    assert [x.id for x in budget.leases()] == [lease.id]
    db.close()
    assert budget.leases() == []
