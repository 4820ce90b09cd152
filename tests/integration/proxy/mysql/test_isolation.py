"""Nothing a client leaves on a server connection reaches the next client of that
connection: with one server connection for two clients, every kind of MySQL session
state is either replayed for its owner (settings, the current database) or keeps its
owner on the connection until it is gone (user variables, temporary tables, locks,
open transactions), and a client that vanishes leaves nothing behind."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest

from .conftest import MySQLProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def one_server(mysql_proxy_factory: Callable[..., MySQLProxy]) -> MySQLProxy:
    # A short borrow timeout: a pinned client shows as the other's timeout, quickly.
    return mysql_proxy_factory(pool_size=1, connection_borrow_timeout=2.0)


@pytest.fixture
def connect(one_server: MySQLProxy) -> Iterator[Callable[..., Any]]:
    opened: list[Any] = []

    def make(**extra: Any) -> Any:
        conn = pymysql.connect(**one_server.kwargs(autocommit=True, **extra))
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        try:
            conn.close()
        except Exception:
            pass


def one(conn: Any, sql: str, args: Any = None) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
        return row[0] if row is not None else None


def server_id(conn: Any) -> int:
    """The server connection this statement ran on (CONNECTION_ID() is the server's)."""
    return int(one(conn, "SELECT CONNECTION_ID()"))


def test_settings_follow_their_client_without_pinning(connect: Callable[..., Any]) -> None:
    a, b = connect(), connect()
    default_mode = one(b, "SELECT @@SESSION.sql_mode")
    default_zone = one(b, "SELECT @@SESSION.time_zone")
    one(a, "SET SESSION sql_mode = 'ANSI_QUOTES', time_zone = '+05:00'")
    one(a, "SET NAMES latin1")
    one(a, "SET @@session.group_concat_max_len = 777")
    # b runs on the same server connection (pool of one) and sees none of it ...
    assert server_id(a) == server_id(b)
    assert one(b, "SELECT @@SESSION.sql_mode") == default_mode
    assert one(b, "SELECT @@SESSION.time_zone") == default_zone
    assert one(b, "SELECT @@SESSION.group_concat_max_len") != 777
    assert one(b, "SELECT @@SESSION.character_set_client") != "latin1"
    # ... while a keeps all of it, replayed on the connection each time it returns.
    assert one(a, "SELECT @@SESSION.sql_mode") == "ANSI_QUOTES"
    assert one(a, "SELECT @@SESSION.time_zone") == "+05:00"
    assert one(a, "SELECT @@SESSION.group_concat_max_len") == 777
    assert one(a, "SELECT @@SESSION.character_set_client") == "latin1"
    one(b, "SELECT 1")
    # Nothing pinned a: b was served while a sat idle.


def test_the_current_database_follows_its_client(
    connect: Callable[..., Any], one_server: MySQLProxy
) -> None:
    a, b = connect(), connect()
    one(a, "CREATE DATABASE IF NOT EXISTS fleetpool_other")
    try:
        one(a, "USE fleetpool_other")
        assert one(b, "SELECT DATABASE()") == one_server.database
        assert one(a, "SELECT DATABASE()") == "fleetpool_other"
        a.select_db(one_server.database)  # COM_INIT_DB
        assert one(a, "SELECT DATABASE()") == one_server.database
    finally:
        one(b, "DROP DATABASE IF EXISTS fleetpool_other")


def test_a_database_that_cannot_be_entered_again_fails_its_clients_command(
    connect: Callable[..., Any], one_server: MySQLProxy
) -> None:
    # a's current database is dropped while b holds the only server connection: a's next
    # command must fail as MySQL would fail it, not run in b's database.
    a, b = connect(), connect()
    one(a, "CREATE DATABASE IF NOT EXISTS fleetpool_gone")
    one(a, "USE fleetpool_gone")
    one(b, "DROP DATABASE fleetpool_gone")
    with pytest.raises(pymysql.err.OperationalError) as raised:
        one(a, "SELECT DATABASE()")
    assert raised.value.args[0] == 1049 and "fleetpool_gone" in raised.value.args[1]
    # Nothing else is lost: b goes on, and a is back once it names a database again.
    assert one(b, "SELECT DATABASE()") == one_server.database
    a.select_db(one_server.database)
    assert one(a, "SELECT DATABASE()") == one_server.database


@pytest.mark.parametrize(
    "make_state, check_state",
    [
        ("SET @secret = 42", "SELECT @secret"),
        ("CREATE TEMPORARY TABLE scratch (x INT)", "SELECT count(*) FROM scratch"),
        ("SELECT GET_LOCK('fleetpool-lock', 0)", "SELECT IS_USED_LOCK('fleetpool-lock')"),
    ],
    ids=["user-variable", "temporary-table", "named-lock"],
)
def test_state_that_cannot_move_pins_its_owner(
    connect: Callable[..., Any], make_state: str, check_state: str
) -> None:
    a, b = connect(), connect()
    one(a, make_state)
    # b cannot have the pool's only connection while a holds state on it: it waits out
    # its borrow timeout rather than seeing a's state.
    started = time.monotonic()
    with pytest.raises(pymysql.err.OperationalError) as info:
        one(b, check_state)
    assert info.value.args[0] == 1040 and "pool" in info.value.args[1]
    assert time.monotonic() - started >= 1.5
    # The owner still has it.
    assert one(a, check_state) is not None
    a.close()
    # Once a has gone, the connection is reset before b gets it: nothing of a's is left.
    b2 = connect()
    if "@secret" in check_state:
        assert one(b2, check_state) is None
    elif "scratch" in check_state:
        with pytest.raises(pymysql.err.ProgrammingError):
            one(b2, check_state)
    else:
        assert one(b2, check_state) is None


def test_pin_log_names_the_program_and_the_statement(
    connect: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    # The program_name connection attribute and the statement's first words lead to
    # the call site; the statement's literals stay out of the log.
    from fleetpool.proxy.events import record_fields

    caplog.set_level("INFO", logger="fleetpool.proxy.events")
    a = connect(program_name="nightly-export")
    one(a, "SELECT 1")
    one(a, "SELECT GET_LOCK('not-for-logs', 0)")
    # The proxy's thread may log the pin just after the client has its answer.
    deadline = time.monotonic() + 5
    while True:
        pins = [
            record_fields(r) for r in caplog.records if record_fields(r).get("event") == "pinned"
        ]
        if pins or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(pins) == 1
    assert pins[0]["application_name"] == "nightly-export"
    assert pins[0]["reason"] == "GET_LOCK"
    assert pins[0]["statement"] == "SELECT GET_LOCK('?', 0)"
    assert "not-for-logs" not in caplog.text


def test_a_client_that_vanishes_mid_transaction_leaves_nothing(
    connect: Callable[..., Any], unique_name: str
) -> None:
    table = unique_name.replace("-", "_")
    setup = connect()
    one(setup, f"CREATE TABLE {table} (id INT PRIMARY KEY) ENGINE=InnoDB")
    try:
        for _ in range(3):
            a = connect()
            a.begin()
            one(a, f"INSERT INTO {table} VALUES (1)")
            # Gone without a word: the socket is shut, no COM_QUIT.
            a._sock.shutdown(socket.SHUT_RDWR)
            a._sock.close()
            b = connect()
            assert one(b, f"SELECT count(*) FROM {table}") == 0
            assert one(b, "SELECT @@in_transaction") == 0
            b.close()
    finally:
        one(connect(), f"DROP TABLE {table}")


def test_prepared_statements_of_two_clients_share_a_connection(one_server: MySQLProxy) -> None:
    mysql_connector = pytest.importorskip("mysql.connector")
    args = one_server.kwargs(use_pure=True, autocommit=True)
    a = mysql_connector.connect(**args)
    b = mysql_connector.connect(**args)
    try:
        ca, cb = a.cursor(prepared=True), b.cursor(prepared=True)
        for i in range(20):
            ca.execute("SELECT ? + 100", (i,))
            assert ca.fetchone()[0] == i + 100
            cb.execute("SELECT CONCAT(?, '-b')", (str(i),))
            assert cb.fetchone()[0] == f"{i}-b"
        ca.close()
        cb.close()
    finally:
        a.close()
        b.close()


def test_last_insert_id_survives_a_change_of_connection(
    mysql_proxy_factory: Callable[..., MySQLProxy], unique_name: str
) -> None:
    proxy = mysql_proxy_factory(pool_size=2)
    table = unique_name.replace("-", "_")
    a = pymysql.connect(**proxy.kwargs(autocommit=True))
    b = pymysql.connect(**proxy.kwargs(autocommit=True))
    try:
        one(a, f"CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        one(a, f"INSERT INTO {table} (v) VALUES (1)")
        first = a.insert_id()
        # b inserts too, on whichever connection; a's LAST_INSERT_ID() stays a's.
        for _ in range(3):
            one(b, f"INSERT INTO {table} (v) VALUES (2)")
        assert one(a, "SELECT LAST_INSERT_ID()") == first
    finally:
        one(b, f"DROP TABLE IF EXISTS {table}")
        a.close()
        b.close()


def test_kill_query_reaches_the_server_connection_running_it(
    mysql_proxy: MySQLProxy,
) -> None:
    a = pymysql.connect(**mysql_proxy.kwargs(autocommit=True))
    b = pymysql.connect(**mysql_proxy.kwargs(autocommit=True))
    outcome: dict[str, Any] = {}

    def sleeper() -> None:
        started = time.monotonic()
        try:
            outcome["value"] = one(a, "SELECT SLEEP(30)")
        except pymysql.err.MySQLError as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started

    try:
        thread = threading.Thread(target=sleeper)
        thread.start()
        time.sleep(0.5)
        # The id the client knows is the proxy's; the proxy kills the query on the server.
        one(b, f"KILL QUERY {a.thread_id()}")
        thread.join(20)
        assert not thread.is_alive()
        # SLEEP() interrupted answers 1 (or an error 1317, by server version), at once.
        assert outcome.get("value") == 1 or getattr(outcome.get("error"), "args", [0])[0] == 1317
        assert outcome["seconds"] < 10
        assert one(a, "SELECT 2") == 2  # the client goes on
        # KILL CONNECTION closes the client.
        one(b, f"KILL {a.thread_id()}")
        with pytest.raises(pymysql.err.MySQLError):
            one(a, "SELECT 3")
    finally:
        b.close()


def test_a_borrow_timeout_names_the_proxy_and_pool(one_server: MySQLProxy) -> None:
    holder = pymysql.connect(**one_server.kwargs())
    waiter = pymysql.connect(**one_server.kwargs())
    try:
        holder.begin()
        one(holder, "SELECT 1")
        with pytest.raises(pymysql.err.OperationalError) as info:
            one(waiter, "SELECT 1")
        code, message = info.value.args
        assert code == 1040
        assert "fleetpool" in message and "pool" in message and "connection_borrow" in message
        holder.rollback()
        assert one(waiter, "SELECT 5") == 5
    finally:
        holder.close()
        waiter.close()
