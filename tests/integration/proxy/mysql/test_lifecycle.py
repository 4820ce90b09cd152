"""The MySQL proxy's pool upkeep and what it shows: pin reasons in SHOW CLIENTS and
/metrics, max_client_connections, init_query, lifetime recycling, min_idle and
idle_timeout, a graceful stop, XA and LOAD DATA LOCAL, and a server login with
MariaDB's client_ed25519."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
import pytest

from fleetpool.proxy.config import parse_upstream

from .conftest import PASSWORD, USER, MySQLProxy

pytestmark = pytest.mark.integration


def wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def direct(mysql_dsn: str, **extra: Any) -> Any:
    """A connection to the proxy's server itself, as its upstream user."""
    u = parse_upstream(mysql_dsn)
    host, port = u.hosts[0]
    return pymysql.connect(host=host, port=port, user=u.user, password=u.password or "", **extra)


def one(conn: Any, sql: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
    return None if row is None else row[0]


def test_pin_reasons_show_in_show_clients_and_metrics(
    mysql_proxy_factory: Callable[..., MySQLProxy],
) -> None:
    proxy = mysql_proxy_factory(
        users={USER: PASSWORD, "ops": "ops-pw"},
        admin_users=["ops"],
        admin_listen=("127.0.0.1", 0),
    )
    with pymysql.connect(**proxy.kwargs(autocommit=True)) as app:
        one(app, "SET @marker = 1")  # a user variable cannot move: it pins
        one(app, "SELECT GET_LOCK('fleetpool-lifecycle', 1)")
        with (
            pymysql.connect(
                **proxy.kwargs(user="ops", password="ops-pw", database="fleetpool")
            ) as ops,
            ops.cursor(pymysql.cursors.DictCursor) as cur,
        ):
            cur.execute("SHOW CLIENTS")
            rows = cur.fetchall()
        pinned = [r for r in rows if r["user"] == USER]
        assert len(pinned) == 1, rows
        reason = pinned[0]["pin_reason"]
        assert "variable" in reason.lower(), pinned[0]
        port = proxy.proxy.admin.port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as resp:
            status = json.loads(resp.read())
        assert status["client_connections_pinned"] == 1
        assert sum(status["pinned_by_reason"].values()) == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        label = f'{{reason="{reason}"}} 1.0'
        assert f"fleetpool_proxy_pins_total{label}" in text, text
        assert f"fleetpool_proxy_client_connections_pinned{label}" in text, text
        one(app, "SELECT RELEASE_LOCK('fleetpool-lifecycle')")


def test_max_client_connections(mysql_proxy_factory: Callable[..., MySQLProxy]) -> None:
    proxy = mysql_proxy_factory(max_client_connections=2)
    with pymysql.connect(**proxy.kwargs()), pymysql.connect(**proxy.kwargs()):
        with pytest.raises(pymysql.err.OperationalError) as info:
            pymysql.connect(**proxy.kwargs())
        assert info.value.args[0] == 1040
        assert "max_client_connections" in info.value.args[1] or "too many" in info.value.args[1]


def test_init_query_runs_on_new_server_connections(
    mysql_proxy_factory: Callable[..., MySQLProxy],
) -> None:
    proxy = mysql_proxy_factory(init_query="SET SESSION max_sort_length = 2048")
    with pymysql.connect(**proxy.kwargs()) as conn:
        assert one(conn, "SELECT @@SESSION.max_sort_length") == 2048
    assert proxy.proxy.stats.pinned_total == 0


def test_lifetime_recycles_and_idle_connections_are_trimmed(
    mysql_proxy_factory: Callable[..., MySQLProxy],
) -> None:
    proxy = mysql_proxy_factory(pool_size=1, max_lifetime=0.3, lifetime_jitter=0.0)
    with pymysql.connect(**proxy.kwargs(autocommit=True)) as conn:
        first = one(conn, "SELECT CONNECTION_ID()")
        time.sleep(0.6)
        second = one(conn, "SELECT CONNECTION_ID()")
        assert first != second

    proxy = mysql_proxy_factory(pool_size=4, min_idle=2, idle_timeout=0.5)
    pool = proxy.proxy.pool
    assert wait_for(lambda: len(pool.idle) >= 2)
    conns = [pymysql.connect(**proxy.kwargs()) for _ in range(4)]
    for conn in conns:
        conn.begin()  # four transactions open at once
        one(conn, "SELECT 1")
    assert len(pool.servers) == 4
    for conn in conns:
        conn.close()
    assert wait_for(lambda: len(pool.servers) == 2)  # trimmed down to min_idle


def test_graceful_stop_lets_the_transaction_finish(
    mysql_proxy_factory: Callable[..., MySQLProxy], mysql_dsn: str, unique_name: str
) -> None:
    proxy = mysql_proxy_factory()
    table = f"drain_{unique_name}".replace("-", "_")
    conn = pymysql.connect(**proxy.kwargs())
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY)")
    conn.begin()
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} VALUES (1)")
    stopper = threading.Thread(target=proxy.handle.stop, kwargs={"timeout": 5.0})
    stopper.start()
    time.sleep(0.3)
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} VALUES (2)")
    conn.commit()
    stopper.join(15)
    assert not stopper.is_alive()
    with pytest.raises(pymysql.err.OperationalError):
        one(conn, "SELECT 3")
    conn.close()
    with direct(mysql_dsn, database=proxy.database) as server:
        assert one(server, f"SELECT COUNT(*) FROM {table}") == 2
        one(server, f"DROP TABLE {table}")


def test_xa_pins_and_load_data_local_works(
    mysql_proxy_factory: Callable[..., MySQLProxy], tmp_path: Path, unique_name: str
) -> None:
    proxy = mysql_proxy_factory(pool_size=2)
    table = f"infile_{unique_name}".replace("-", "_")
    data = tmp_path / "rows.csv"
    data.write_text("".join(f"{i},row {i}\n" for i in range(1, 501)))
    with pymysql.connect(**proxy.kwargs(local_infile=True, autocommit=True)) as conn:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(20))")
            cur.execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {table} FIELDS TERMINATED BY ',' (id, name)",
                (str(data),),
            )
            assert cur.rowcount == 500
        assert one(conn, f"SELECT COUNT(*) FROM {table}") == 500
        assert one(conn, f"SELECT name FROM {table} WHERE id = 500") == "row 500"
    assert proxy.proxy.stats.pins == {"LOAD DATA LOCAL": 1}
    with pymysql.connect(**proxy.kwargs(autocommit=True)) as conn:
        with conn.cursor() as cur:
            cur.execute("XA START 'fleetpool-xa'")
            cur.execute(f"INSERT INTO {table} VALUES (501, 'xa')")
            cur.execute("XA END 'fleetpool-xa'")
            cur.execute("XA PREPARE 'fleetpool-xa'")
            cur.execute("XA COMMIT 'fleetpool-xa'")
        assert proxy.proxy.stats.pins == {"LOAD DATA LOCAL": 1, "XA": 1}
        assert one(conn, f"SELECT name FROM {table} WHERE id = 501") == "xa"
        one(conn, f"DROP TABLE {table}")


def test_the_proxy_logs_in_to_the_server_with_ed25519(
    mysql_proxy_factory: Callable[..., MySQLProxy], mysql_dsn: str, unique_name: str
) -> None:
    u = parse_upstream(mysql_dsn)
    host, port = u.hosts[0]
    user = f"ed_{unique_name}"[:32].replace("-", "_")
    with direct(mysql_dsn, autocommit=True) as admin:
        try:
            one(admin, "INSTALL SONAME 'auth_ed25519'")
        except pymysql.err.MySQLError as exc:
            if "already" not in str(exc).lower() and exc.args[0] != 1968:
                pytest.skip(f"this MariaDB has no auth_ed25519 plugin: {exc}")
        one(admin, f"CREATE USER '{user}'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('ed-pw')")
        one(admin, f"GRANT ALL ON `{u.database}`.* TO '{user}'@'%'")
    try:
        proxy = mysql_proxy_factory(upstream_url=f"mysql://{user}:ed-pw@{host}:{port}/{u.database}")
        with pymysql.connect(**proxy.kwargs()) as conn:
            assert one(conn, "SELECT CURRENT_USER()").startswith(user)
    finally:
        with direct(mysql_dsn, autocommit=True) as admin:
            one(admin, f"DROP USER IF EXISTS '{user}'@'%'")


def test_state_a_procedure_creates_pins_by_the_servers_report(
    mysql_proxy_factory: Callable[..., MySQLProxy], mysql_dsn: str, unique_name: str
) -> None:
    """``CALL p()`` shows nothing in its text; the server's session-state tracking does."""
    proc = f"setvar_{unique_name}".replace("-", "_")
    server = direct(mysql_dsn, database=parse_upstream(mysql_dsn).database, autocommit=True)
    one(server, f"CREATE PROCEDURE {proc}() BEGIN SET @hidden = 42; END")
    try:
        proxy = mysql_proxy_factory(pool_size=1, connection_borrow_timeout=1.0)
        with pymysql.connect(**proxy.kwargs(autocommit=True)) as a:
            one(a, f"CALL {proc}()")
            assert proxy.proxy.stats.pins == {"session state (reported by the server)": 1}
            assert one(a, "SELECT @hidden") == 42
        with pymysql.connect(**proxy.kwargs(autocommit=True)) as b:
            assert one(b, "SELECT @hidden") is None  # reset before b got the connection
    finally:
        one(server, f"DROP PROCEDURE {proc}")
        server.close()


def test_a_login_that_stalls_is_closed(mysql_proxy_factory: Callable[..., MySQLProxy]) -> None:
    import socket

    proxy = mysql_proxy_factory(client_login_timeout=0.3)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        started = time.monotonic()
        received = b""
        while True:  # the handshake, then (no answer from us) the error and the close
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        assert time.monotonic() - started < 5
    assert b"login timed out" in received
    with pymysql.connect(**proxy.kwargs()) as conn:  # others are not affected
        assert one(conn, "SELECT 1") == 1
