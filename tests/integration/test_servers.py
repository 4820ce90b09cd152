"""The test servers themselves: limits, restarts, crashes, replication, freezing, moto.

SQLSTATEs of refused PostgreSQL connections are read with asyncpg: psycopg 3 reports a
connection-time failure without a SQLSTATE (``e.sqlstate is None``).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from fleetpool_testing import MariaDBServer, PostgresServer, RedisServer

psycopg = pytest.importorskip("psycopg")


def _pg_connect_sqlstate(dsn: str) -> str | None:
    """Open one connection with asyncpg and return the SQLSTATE it is refused with."""
    asyncpg = pytest.importorskip("asyncpg")

    async def attempt() -> str | None:
        try:
            conn = await asyncpg.connect(dsn, timeout=5)
        except asyncpg.PostgresError as e:
            return str(e.sqlstate)
        await conn.close()
        return None

    return asyncio.run(attempt())


def _wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# ----------------------------------------------------------------- PostgreSQL


def test_postgres_refuses_beyond_max_connections(pg_server_factory: Any) -> None:
    pg: PostgresServer = pg_server_factory(max_connections=5)
    conns = [psycopg.connect(pg.dsn) for _ in range(5)]  # reserved slots are 0: all 5 usable
    try:
        assert _pg_connect_sqlstate(pg.dsn) == "53300"  # too_many_connections
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.dsn, connect_timeout=5)
    finally:
        for c in conns:
            c.close()
    assert _pg_connect_sqlstate(pg.dsn) is None


def test_postgres_restart_and_crash_keep_data(pg_server_factory: Any) -> None:
    pg: PostgresServer = pg_server_factory(max_connections=10)
    port = pg.port
    pg.execute("CREATE TABLE kept (v text)")
    pg.execute("INSERT INTO kept VALUES ('before restart')")
    pg.restart()
    pg.execute("INSERT INTO kept VALUES ('before crash')")
    old_pid = pg.pid
    pg.kill()
    assert not pg.running
    pg.start()
    assert (pg.port, pg.running) == (port, True) and pg.pid != old_pid
    rows = pg.execute("SELECT v FROM kept ORDER BY v")
    assert rows == [("before crash",), ("before restart",)]


def test_postgres_password_auth(pg_server_factory: Any) -> None:
    pg: PostgresServer = pg_server_factory(auth="scram-sha-256", password="s3cr/et")
    with pg.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert _pg_connect_sqlstate(pg.dsn.replace("s3cr%2Fet", "wrong")) == "28P01"
    assert pg.execute("SELECT current_setting('password_encryption')") == [("scram-sha-256",)]


def test_postgres_standby_follows_and_promotes(pg_server_factory: Any) -> None:
    primary: PostgresServer = pg_server_factory(max_connections=10, replication=True)
    primary.execute("CREATE TABLE t (i int)")
    primary.execute("INSERT INTO t VALUES (1)")
    standby = pg_server_factory.standby_of(primary)
    assert standby.in_recovery and standby.port != primary.port
    primary.execute("INSERT INTO t VALUES (2)")
    _wait_for(lambda: standby.execute("SELECT count(*) FROM t") == [(2,)])

    primary.kill()
    standby.promote()
    assert not standby.in_recovery
    standby.execute("INSERT INTO t VALUES (3)")
    with standby.connect() as conn:
        assert conn.execute("SELECT sum(i) FROM t").fetchone() == (6,)


def test_session_postgres(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


# ----------------------------------------------------------------- MariaDB


def test_mariadb_refuses_beyond_max_connections(mysql_server_factory: Any) -> None:
    pymysql = pytest.importorskip("pymysql")
    # 10 is MariaDB's minimum; root has SUPER, which gets one connection beyond the limit,
    # so the limit is probed with a plain user.
    db: MariaDBServer = mysql_server_factory(max_connections=10)
    db.execute("CREATE USER 'app'@'%' IDENTIFIED BY 'pw'")
    db.execute("GRANT ALL ON test.* TO 'app'@'%'")
    conns = [db.connect(user="app", password="pw") for _ in range(10)]
    try:
        with pytest.raises(pymysql.err.OperationalError) as info:
            db.connect(user="app", password="pw")
        assert info.value.args[0] == 1040  # ER_CON_COUNT_ERROR
    finally:
        for c in conns:
            c.close()
    with pytest.raises(ValueError, match="at least 10"):
        MariaDBServer(max_connections=3)
    db.restart()
    assert db.execute("SELECT user FROM mysql.user WHERE user = 'app'") == [("app",)]


def test_session_mysql(mysql_dsn: str) -> None:
    pymysql = pytest.importorskip("pymysql")
    from urllib.parse import urlsplit

    u = urlsplit(mysql_dsn)
    conn = pymysql.connect(
        host=u.hostname, port=u.port or 3306, user=u.username, password=u.password or ""
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()


# ----------------------------------------------------------------- Redis


def test_redis_freeze_makes_clients_time_out(redis_server_factory: Any) -> None:
    redis = pytest.importorskip("redis")
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    server: RedisServer = redis_server_factory()
    client = redis.Redis.from_url(server.url, socket_timeout=0.3, retry=Retry(NoBackoff(), 0))
    try:
        assert client.ping()
        with server.frozen(), pytest.raises(redis.TimeoutError):
            client.ping()
        assert client.ping()
        timer = server.pause(0.3)
        timer.join(5)
        assert client.ping()
    finally:
        client.close()


def test_session_redis(redis_url: str, unique_name: str) -> None:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        client.set(unique_name, "v", ex=60)
        assert client.get(unique_name) == b"v"
    finally:
        client.close()


# ----------------------------------------------------------------- cleanup and moto


def test_close_removes_processes_and_files(redis_server_factory: Any) -> None:
    server: RedisServer = redis_server_factory()
    pid, tmpdir = server.pid, server.tmpdir
    assert pid is not None and tmpdir.exists()
    server.close()
    assert not server.running and not tmpdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_moto_dynamodb_answers(moto_endpoint: str) -> None:
    boto3 = pytest.importorskip("boto3")
    client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    assert "TableNames" in client.list_tables()
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
