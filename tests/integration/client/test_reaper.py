"""The reaper ends only the fleet's own idle sessions whose lease expired (or idle too long),
never another user's, a running one, or one inside a transaction."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

import fleetpool
from fleetpool.client.dsn import budget_key
from tests.integration.client.helpers import admin, one


def _alive(dsn: str, pid: int) -> bool:
    return bool(admin(dsn, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))[0][0])


@pytest.mark.slow
def test_postgres_reaper_safety(pg_server_factory: Any, make_db: Any, unique_name: str) -> None:
    server = pg_server_factory(max_connections=20)
    dsn = server.dsn
    admin(dsn, "CREATE ROLE other LOGIN")
    budget = fleetpool.open_budget("memory://", unique_name)
    budget.configure(limit=10)
    prefix = f"fp:{budget_key(unique_name)}:"
    dead_tag = prefix + "deadbeef0000:f"

    live = make_db(dsn, budget=budget, reap_threshold=None)
    with live.connection():
        pass
    orphan = make_db(dsn, budget=budget, reap_threshold=None)
    with orphan.connection():
        pass
    assert orphan.lease is not None
    budget.release(orphan.lease)  # its container "died": the lease is gone, the session not
    orphan_pid = orphan.session_id
    assert orphan_pid is not None

    other = psycopg.connect(dsn.replace("postgres@", "other@"), application_name=dead_tag)
    in_trx = psycopg.connect(dsn, application_name=dead_tag)
    in_trx.execute("SELECT 1")  # autocommit off: the transaction stays open
    busy = psycopg.connect(dsn, application_name=dead_tag, autocommit=True)
    sleeper = threading.Thread(target=busy.execute, args=("SELECT pg_sleep(4)",))
    sleeper.start()
    untagged = psycopg.connect(dsn, application_name="psql")
    time.sleep(1.2)  # past the expired-lease grace period
    try:
        dry = fleetpool.reap(dsn, budget=budget, dry_run=True)
        assert {v.row.id for v in dry.candidates} == {orphan_pid}
        assert dry.killed == [] and _alive(dsn, orphan_pid)

        report = fleetpool.reap(dsn, budget=budget)
        assert report.killed == [orphan_pid], report.summary()
        assert report.skipped.get("other_user") == 1
        assert report.skipped.get("in_transaction") == 1
        assert report.skipped.get("running") == 1
        assert not _alive(dsn, orphan_pid)
        for conn in (other, in_trx, untagged):
            assert _alive(dsn, conn.info.backend_pid)
        assert _alive(dsn, busy.info.backend_pid)
        # The live lease's session is kept; the orphan reconnects under a new lease.
        with live.connection() as conn:
            assert one(conn, "SELECT 1") == 1
        assert live.stats.reconnects == 0

        # idle_after also ends the fleet's live but idle sessions.
        time.sleep(0.7)
        report = fleetpool.reap(dsn, budget=budget, idle_after=0.5)
        assert live.session_id in report.killed
    finally:
        sleeper.join()
        for conn in (other, in_trx, busy, untagged):
            conn.close()


def test_database_triggers_reaper_once_per_interval(
    pg_dsn: str, make_db: Any, unique_name: str
) -> None:
    budget = fleetpool.open_budget("memory://", unique_name)
    budget.configure(limit=10)
    a = make_db(pg_dsn, budget=budget, reap_threshold=0.001, reap_interval=30)
    b = make_db(pg_dsn, budget=budget, reap_threshold=0.001, reap_interval=30)
    for db in (a, b):
        with db.connection() as conn:
            assert one(conn, "SELECT 1") == 1
    # Both saw the server "over" the threshold; only one got the fleet-wide token.
    assert a.stats.reaps + b.stats.reaps == 1
    assert a.last_reap is not None or b.last_reap is not None
    assert (a.stats.resets, b.stats.resets) == (0, 0)


@pytest.mark.slow
def test_mysql_reaper_with_performance_schema(
    mysql_server_factory: Any, make_db: Any, unique_name: str
) -> None:
    server = mysql_server_factory(max_connections=20, settings={"performance_schema": "ON"})
    dsn = server.dsn
    budget = fleetpool.open_budget("memory://", unique_name)
    budget.configure(limit=10)
    live = make_db(dsn, budget=budget, reap_threshold=None)
    orphan = make_db(dsn, budget=budget, reap_threshold=None)
    in_trx = make_db(dsn, budget=budget, reap_threshold=None)
    for db in (live, orphan, in_trx):
        with db.connection():
            pass
    assert orphan.lease is not None and in_trx.lease is not None
    budget.release(orphan.lease)
    budget.release(in_trx.lease)
    trx_conn = in_trx._conn
    with trx_conn.cursor() as cur:
        cur.execute("CREATE TABLE fp_reap (a INT) ENGINE=InnoDB")
        cur.execute("BEGIN")
        # MySQL lists a transaction once it touched an InnoDB table; before
        # that it holds no locks and no changes.
        cur.execute("INSERT INTO fp_reap VALUES (1)")
    time.sleep(1.2)
    report = fleetpool.reap(dsn, budget=budget)
    assert report.killed == [orphan.session_id], report.summary()
    assert report.skipped.get("in_transaction") == 1
    with live.connection() as conn:
        assert one(conn, "SELECT 1") == 1
    assert live.stats.reconnects == 0


def test_reap_cli_function(pg_dsn: str, tmp_path: Any, unique_name: str, capsys: Any) -> None:
    from fleetpool.client.cli import reap

    url = f"sqlite:///{tmp_path / 'b.db'}"
    fleetpool.open_budget(url, unique_name).configure(limit=3)
    reap(
        pg_dsn,
        budget=url,
        budget_name=unique_name,
        idle_after=None,
        dry_run=True,
        rds=False,
        as_json=True,
    )
    out = capsys.readouterr().out
    assert '"dry_run": true' in out and '"engine": "postgresql"' in out
