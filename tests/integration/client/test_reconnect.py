"""Transparent reconnects (server idle timeout, kills, restarts), never a silent re-run;
clear errors for bad targets within connect_timeout."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pymysql
import pytest

import fleetpool
from tests.integration.client.helpers import admin, one, rows


def _kill(dsn: str, session_id: int) -> None:
    if dsn.startswith("postgres"):
        admin(dsn, "SELECT pg_terminate_backend(%s)", (session_id,))
    else:
        admin(dsn, f"KILL CONNECTION {int(session_id)}")


def _wait_gone(dsn: str, session_id: int, timeout: float = 5.0) -> None:
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
        if dsn.startswith("postgres")
        else "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = %s"
    )
    deadline = time.monotonic() + timeout
    while admin(dsn, sql, (session_id,))[0][0]:
        assert time.monotonic() < deadline, f"session {session_id} still there"
        time.sleep(0.05)


def test_killed_session_is_replaced_at_next_checkout(dsn: str, make_db: Any) -> None:
    db = make_db(dsn)
    with db.connection() as conn:
        first = db.session_id
        assert one(conn, "SELECT 1") == 1
    _kill(dsn, first)
    _wait_gone(dsn, first)
    time.sleep(0.05)
    with db.connection() as conn:
        assert one(conn, "SELECT 1") == 1
        assert db.session_id != first
    assert db.stats.reconnects == 1


def test_server_idle_timeout_matches_lease_and_is_survived(dsn: str, make_db: Any) -> None:
    db = make_db(dsn, lease_ttl=2.0)  # idle timeout: 1 s
    with db.connection() as conn:
        first = db.session_id
        if dsn.startswith("postgres"):
            assert one(conn, "SHOW idle_session_timeout") == "1s"
            assert one(conn, "SHOW idle_in_transaction_session_timeout") == "1s"
        else:
            assert one(conn, "SELECT @@wait_timeout") == 1
    _wait_gone(dsn, first, timeout=6.0)  # the server closed it by itself
    with db.connection() as conn:
        assert one(conn, "SELECT 1") == 1
    assert db.stats.reconnects == 1


def test_statement_is_never_silently_rerun(dsn: str, make_db: Any, unique_name: str) -> None:
    table = unique_name.replace("-", "_")
    admin(dsn, f"CREATE TABLE {table} (a INT)")
    db = make_db(dsn)
    with db.connection() as conn:
        sid = db.session_id
    sleep = "pg_sleep(3)" if dsn.startswith("postgres") else "SLEEP(3)"
    killer = threading.Timer(0.5, _kill, (dsn, sid))
    killer.start()
    try:
        errors = (
            psycopg.OperationalError,
            pymysql.err.OperationalError,
            db.driver.operational_error,
        )
        with pytest.raises(errors), db.connection() as conn:
            rows(conn, f"INSERT INTO {table} SELECT 1 FROM (SELECT {sleep}) AS s")
    finally:
        killer.join()
    # The statement ran at most once (here: not at all), and the next invocation works.
    with db.connection() as conn:
        assert one(conn, f"SELECT count(*) FROM {table}") == 0


def test_pg_server_restart_between_invocations(pg_server_factory: Any, make_db: Any) -> None:
    server = pg_server_factory(max_connections=10)
    db = make_db(server.dsn)
    with db.connection() as conn:
        assert one(conn, "SELECT 1") == 1
    server.restart()
    with db.connection() as conn:
        assert one(conn, "SELECT 2") == 2
    assert db.stats.connects == 2


def test_mysql_server_restart_between_invocations(mysql_server_factory: Any, make_db: Any) -> None:
    server = mysql_server_factory(max_connections=10)
    db = make_db(server.dsn)
    with db.connection() as conn:
        assert one(conn, "SELECT 1") == 1
    server.restart()
    with db.connection() as conn:
        assert one(conn, "SELECT 2") == 2
    assert db.stats.connects == 2


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_unreachable_host_fails_clearly_within_connect_timeout(scheme: str, make_db: Any) -> None:
    from fleetpool_testing import free_port

    db = make_db(f"{scheme}://u@127.0.0.1:{free_port()}/db", connect_timeout=1.0)
    start = time.monotonic()
    with pytest.raises(fleetpool.DatabaseUnavailable) as info, db.connection():
        pass
    elapsed = time.monotonic() - start
    assert elapsed < 2.5, elapsed
    assert isinstance(info.value, db.driver.operational_error)  # the driver in use
    assert "connect_timeout" in str(info.value) and "127.0.0.1" in str(info.value)
    assert db.stats.connect_retries >= 1  # transient errors were retried


def test_unknown_database_is_not_retried(dsn: str, make_db: Any) -> None:
    bad = dsn.rsplit("/", 1)[0] + "/no_such_db_fp"
    db = make_db(bad, connect_timeout=5.0)
    start = time.monotonic()
    with pytest.raises(fleetpool.DatabaseUnavailable) as info, db.connection():
        pass
    assert time.monotonic() - start < 1.5
    assert db.stats.connect_retries == 0
    # libpq gives no SQLSTATE for a failed login; PyMySQL has the error number.
    assert getattr(info.value, "errno", None) in (None, 1049)
