"""BackendLogin and ResponseTracker against a real MariaDB: logins (native, ed25519, TLS,
refusals) and command round trips whose ends the tracker must find exactly."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetpool.mysql import constants as c
from fleetpool.mysql import messages as m
from fleetpool.mysql.login import BACKEND_CAPABILITIES, BackendLogin, LoginFailed, ServerSession
from fleetpool.mysql.tracker import ResponseTracker
from fleetpool_testing import MariaDBServer, MissingBinary
from tests.mysql_wire import Conn, Exchange, backend_connect, client_context, command, make_cert

PASSWORD = "s3cret-pw"
LEGACY = (BACKEND_CAPABILITIES & ~c.CLIENT_DEPRECATE_EOF) | c.CLIENT_LOCAL_FILES
MODERN = BACKEND_CAPABILITIES | c.CLIENT_LOCAL_FILES


@pytest.fixture(scope="module")
def tls_files() -> Iterator[tuple[str, str]]:
    folder = Path(tempfile.mkdtemp(prefix="fp-mysql-tls-"))
    yield make_cert(folder)


@pytest.fixture(scope="module")
def server(tls_files: tuple[str, str]) -> Iterator[Any]:

    cert, key = tls_files
    srv = MariaDBServer(
        password=PASSWORD,
        settings={"ssl_cert": cert, "ssl_key": key, "local_infile": "ON"},
    )
    try:
        srv.start()
    except MissingBinary as exc:  # pragma: no cover - scripts/test installs it
        pytest.skip(str(exc))
    srv.execute("INSTALL SONAME 'auth_ed25519'")
    srv.execute("CREATE USER 'ed'@'127.0.0.1' IDENTIFIED VIA ed25519 USING PASSWORD('ed-pw')")
    srv.execute("GRANT ALL ON test.* TO 'ed'@'127.0.0.1'")
    srv.execute("CREATE TABLE test.items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(40))")
    srv.execute("INSERT INTO test.items (name) VALUES ('a'), ('b'), ('c')")
    srv.execute(
        "CREATE PROCEDURE test.two_results() BEGIN SELECT 1; SELECT 2, 3 UNION SELECT 4, 5; END"
    )
    yield srv
    srv.close()


def login(server: Any, caps: int = MODERN, **kwargs: Any) -> tuple[Conn, ServerSession]:
    kwargs.setdefault("tls", "disable")
    user = kwargs.pop("user", "root")
    password = kwargs.pop("password", PASSWORD)
    database = kwargs.pop("database", "test")
    backend = BackendLogin(
        user, password, database, {"program_name": "fp-test"}, capabilities=caps, **kwargs
    )
    conn, outcome = backend_connect(server.host, server.port, backend, client_context())
    assert isinstance(outcome, ServerSession), outcome
    return conn, outcome


def query(conn: Conn, tracker: ResponseTracker, sql: str) -> Exchange:
    return command(conn, tracker, m.com_query(sql))


def test_native_login_reports_the_server(server: Any) -> None:
    conn, info = login(server)
    try:
        assert info.is_mariadb and info.version.startswith("10.")
        assert info.auth_plugin == "mysql_native_password" and not info.tls
        assert info.status & c.SERVER_STATUS_AUTOCOMMIT
        tracker = ResponseTracker(info.capabilities, info.status)
        ex = query(conn, tracker, "SELECT CONNECTION_ID(), DATABASE()")
        columns, row = 2, ex.packets[-2]
        assert m.parse_text_row(row, columns) == [str(info.connection_id).encode(), b"test"]
    finally:
        conn.close()


def test_tls_login(server: Any) -> None:
    conn, info = login(server, tls="require")
    try:
        assert info.tls
        tracker = ResponseTracker(info.capabilities, info.status)
        ex = query(conn, tracker, "SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert ex.tracker.rows == 1 and m.parse_text_row(ex.packets[-2], 2)[1]
    finally:
        conn.close()


def test_ed25519_login_through_auth_switch(server: Any) -> None:
    conn, info = login(server, user="ed", password="ed-pw")
    try:
        assert info.auth_plugin == "client_ed25519"
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"password": "wrong"}, c.ER_ACCESS_DENIED_ERROR),
        ({"user": "ed", "password": "wrong"}, c.ER_ACCESS_DENIED_ERROR),
        ({"database": "no_such_db"}, c.ER_BAD_DB_ERROR),
    ],
)
def test_refused_logins(server: Any, kwargs: dict[str, str], code: int) -> None:
    user = kwargs.get("user", "root")
    backend = BackendLogin(
        user, kwargs.get("password", PASSWORD), kwargs.get("database", "test"), tls="disable"
    )
    conn, outcome = backend_connect(server.host, server.port, backend)
    conn.close()
    assert isinstance(outcome, LoginFailed) and outcome.from_server
    assert outcome.code == code


@pytest.fixture(params=[MODERN, LEGACY], ids=["deprecate_eof", "legacy_eof"])
def session(request: pytest.FixtureRequest, server: Any) -> Iterator[tuple[Conn, ResponseTracker]]:
    conn, info = login(server, caps=request.param)
    assert bool(info.capabilities & c.CLIENT_DEPRECATE_EOF) == (request.param == MODERN)
    yield conn, ResponseTracker(info.capabilities, info.status)
    conn.close()


def test_text_results_and_transactions(session: tuple[Conn, ResponseTracker]) -> None:
    conn, t = session
    ex = query(conn, t, "SELECT id, name FROM items ORDER BY id")
    assert (t.rows, t.results, t.error) == (3, 1, None)
    assert [m.parse_text_row(p, 2) for p in ex.packets[-4:-1]] == [
        [b"1", b"a"],
        [b"2", b"b"],
        [b"3", b"c"],
    ]
    query(conn, t, "BEGIN")
    assert t.in_transaction
    query(conn, t, "INSERT INTO items (name) VALUES ('d')")
    assert t.affected_rows == 1 and t.last_insert_id >= 4 and t.in_transaction
    query(conn, t, "ROLLBACK")
    assert not t.in_transaction and t.status_known


def test_multi_statements_and_procedures(session: tuple[Conn, ResponseTracker]) -> None:
    conn, t = session
    query(conn, t, "BEGIN; SELECT 1; SELECT name FROM items; COMMIT; SELECT 2")
    assert (t.results, t.rows) == (5, 5) and not t.in_transaction
    query(conn, t, "CALL two_results()")
    assert t.results == 3 and t.rows == 3  # two result sets and the CALL's own OK


def test_errors(session: tuple[Conn, ResponseTracker]) -> None:
    conn, t = session
    query(conn, t, "SELECT * FROM no_such_table")
    assert (
        t.error is not None and t.error.code == c.ER_NO_SUCH_TABLE and t.error.sqlstate == "42S02"
    )
    query(conn, t, "BEGIN; SELECT 1; SELECT * FROM no_such_table; SELECT 2")
    assert t.error is not None and t.results == 3 and not t.status_known
    command(conn, t, m.com_ping())
    assert t.status_known and t.in_transaction  # MariaDB keeps the transaction open
    query(conn, t, "ROLLBACK")
    # An error in the middle of rows: the subquery has two rows from the second row on.
    query(
        conn, t, "SELECT id, (SELECT id FROM items i WHERE i.id <= items.id) FROM items ORDER BY id"
    )
    assert t.error is not None and t.error.code == 1242 and t.rows == 1


def test_local_infile_refused(session: tuple[Conn, ResponseTracker]) -> None:
    conn, t = session
    query(conn, t, "CREATE TEMPORARY TABLE up (a INT)")
    ex = query(conn, t, "LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE up")
    assert t.infile == "/etc/hostname" and t.done and t.error is None and t.affected_rows == 0
    assert ex.packets[0][0] == 0xFB
    command(
        conn,
        t,
        m.com_query("LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE up"),
        infile=lambda _: b"1\n2\n",
    )
    assert t.affected_rows == 2


def test_prepared_statements(session: tuple[Conn, ResponseTracker]) -> None:
    conn, t = session
    command(conn, t, m.com_stmt_prepare("SELECT id, name FROM items WHERE id >= ? ORDER BY id"))
    prepared = t.prepare_ok
    assert prepared is not None and (prepared.params, prepared.columns) == (1, 2)
    sid = prepared.statement_id
    command(conn, t, m.com_stmt_execute(sid, [2]))
    assert (t.rows, t.error) == (2, None)
    # A read-only cursor: no rows with the execute, then fetches.
    command(conn, t, m.com_stmt_execute(sid, [1], flags=c.CURSOR_TYPE_READ_ONLY))
    assert t.cursor_open and t.rows == 0
    command(conn, t, m.com_stmt_fetch(sid, 2))
    assert t.rows == 2
    command(conn, t, m.com_stmt_fetch(sid, 5))
    assert t.rows == 1 and t.status & c.SERVER_STATUS_LAST_ROW_SENT
    command(conn, t, m.com_stmt_reset(sid))
    assert t.error is None
    # Long data, then an execute that uses it.
    command(conn, t, m.com_stmt_prepare("SELECT CONCAT(?, '!')"))
    assert t.prepare_ok is not None
    sid2 = t.prepare_ok.statement_id
    command(conn, t, m.com_stmt_send_long_data(sid2, 0, b"long data"))
    ex = command(conn, t, m.com_stmt_execute(sid2, [b""], send_types=True))
    assert t.rows == 1 and b"long data!" in ex.data
    command(conn, t, m.com_stmt_close(sid))
    command(conn, t, m.com_stmt_execute(sid, [1]))
    assert t.error is not None and t.error.code == c.ER_UNKNOWN_STMT_HANDLER
    command(conn, t, m.com_stmt_prepare("SELECT * FROM nope"))
    assert t.error is not None and t.prepare_ok is None


def test_other_commands_and_session_tracking(session: tuple[Conn, ResponseTracker]) -> None:
    conn, t = session
    ex = command(conn, t, m.com_statistics())
    assert b"Uptime" in ex.packets[0]
    command(conn, t, m.com_field_list("items"))
    assert t.rows == 2 and t.error is None
    command(conn, t, m.com_init_db("mysql"))
    assert t.error is None
    query(conn, t, "USE test")
    assert any(s.schema == "test" for s in t.session_changes)
    query(conn, t, "SET SESSION time_zone = '+01:00'")
    assert ("time_zone", "+01:00") in [v for s in t.session_changes for v in s.system_variables]
    command(conn, t, m.com_set_option(c.MYSQL_OPTION_MULTI_STATEMENTS_OFF))
    assert t.error is None
    query(conn, t, "SELECT 1; SELECT 2")
    assert t.error is not None  # multi-statements are now off
    command(conn, t, m.com_set_option(c.MYSQL_OPTION_MULTI_STATEMENTS_ON))
    query(conn, t, "SET @v = 5")
    command(conn, t, m.com_reset_connection())
    ex = query(conn, t, "SELECT @v")
    assert m.parse_text_row(ex.packets[-2], 1) == [None]
    command(conn, t, m.com_ping())
    assert t.error is None
