"""Scripted PyMySQL sessions, each run once directly against MariaDB and once through the
proxy (transaction mode).

Strategy: a script is a plain function of a Run; each step is one client call whose
received packets are recorded. Scripts are deterministic (no connection ids, times or
random names); their tables are dropped on an unrecorded connection first, so a failed
earlier run leaves nothing that changes a transcript.
"""

from __future__ import annotations

from collections.abc import Callable

import pymysql
from pymysql.constants import CLIENT

from fleetpool.mysql import messages as mm

from .tap import Run

Script = Callable[[Run], None]
SCRIPTS: dict[str, Script] = {}


def script(fn: Script) -> Script:
    SCRIPTS[fn.__name__] = fn
    return fn


def setup(run: Run, *statements: str) -> None:
    """Statements on an unrecorded connection (fresh tables for the script)."""
    t = run.target
    conn = pymysql.connect(
        host=t.host, port=t.port, user=t.user, password=t.password, database=t.database,
        autocommit=True, connect_timeout=10, read_timeout=30,
    )  # fmt: skip
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


@script
def login(run: Run) -> None:
    a = run.session()
    a.capabilities()
    a.sql("SELECT @@version, DATABASE(), CURRENT_USER() = CONCAT(USER(), '') AS same_user")


@script
def literals(run: Run) -> None:
    a = run.session()
    a.sql(
        "SELECT 1 AS one, 'a' AS s, NULL AS n, 1.50 AS d, 1e3 AS f, -9223372036854775808 AS i,"
        " CAST(18446744073709551615 AS UNSIGNED) AS u, CAST('2024-01-02' AS DATE) AS dt,"
        " CAST('12:34:56.5' AS TIME(1)) AS tm, x'00ff' AS b, _latin1'caf\xe9' AS l"
    )
    a.sql("SELECT '' AS empty, REPEAT('x', 300) AS long_text")
    a.sql("SELECT 1 AS none FROM DUAL WHERE 1 = 0")


@script
def table_columns(run: Run) -> None:
    setup(
        run,
        "DROP TABLE IF EXISTS fid_columns",
        "CREATE TABLE fid_columns (id INT AUTO_INCREMENT PRIMARY KEY, big BIGINT UNSIGNED,"
        " dec3 DECIMAL(10,3) NOT NULL DEFAULT 0, fl FLOAT, db DOUBLE,"
        " v VARCHAR(20) CHARACTER SET latin1, t TEXT, bl BLOB, dt DATETIME(6), ts TIMESTAMP NULL,"
        " e ENUM('a','b'), st SET('x','y'), j JSON, bi BIT(3), y YEAR, UNIQUE KEY (v))",
    )
    a = run.session()
    a.sql(
        "INSERT INTO fid_columns (big, dec3, fl, db, v, t, bl, dt, ts, e, st, j, bi, y) VALUES"
        " (18446744073709551615, 1.5, 0.25, 1e300, 'caf\xe9', REPEAT('t', 70), x'0001',"
        " '2024-02-29 12:00:00.123456', '2024-02-29 12:00:00', 'b', 'x,y', '{\"k\": [1]}',"
        " b'101', 2024)"
    )
    a.sql("SELECT * FROM fid_columns")
    a.sql("SELECT c.id AS ident, c.v AS label, c.dec3 * 2 AS twice FROM fid_columns AS c")
    a.sql("DROP TABLE fid_columns")


@script
def ok_packets(run: Run) -> None:
    setup(
        run,
        "DROP TABLE IF EXISTS fid_ok",
        "CREATE TABLE fid_ok (id INT AUTO_INCREMENT PRIMARY KEY, k INT UNIQUE, v INT)",
    )
    a = run.session()
    a.sql("INSERT INTO fid_ok (k, v) VALUES (1, 10)")
    a.sql("INSERT INTO fid_ok (k, v) VALUES (2, 20), (3, 30), (4, 40)")
    a.sql("SELECT LAST_INSERT_ID()")
    a.sql("UPDATE fid_ok SET v = v + 1 WHERE k > 1")
    a.sql("UPDATE fid_ok SET v = v WHERE k = 1")
    a.sql("INSERT INTO fid_ok (k, v) VALUES (1, 99) ON DUPLICATE KEY UPDATE v = VALUES(v)")
    a.sql("REPLACE INTO fid_ok (k, v) VALUES (2, 7)")
    a.sql("INSERT IGNORE INTO fid_ok (k, v) VALUES (3, 0), (5, 50)")
    a.sql("DELETE FROM fid_ok WHERE k >= 4")
    a.sql("SELECT ROW_COUNT(), FOUND_ROWS()")
    a.sql("DROP TABLE fid_ok")


@script
def insert_id_and_row_count(run: Run) -> None:
    setup(
        run,
        "DROP TABLE IF EXISTS fid_ids",
        "CREATE TABLE fid_ids (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
    )
    a = run.session()
    a.sql("INSERT INTO fid_ids (v) VALUES (1), (2), (3)")
    a.sql("SELECT LAST_INSERT_ID(), ROW_COUNT()")
    a.sql("SELECT ROW_COUNT()")
    a.sql("DROP TABLE fid_ids")


@script
def warnings(run: Run) -> None:
    setup(run, "DROP TABLE IF EXISTS fid_warn", "CREATE TABLE fid_warn (n TINYINT, s CHAR(2))")
    a = run.session()
    a.sql("SET SESSION sql_mode = ''")
    a.sql("INSERT INTO fid_warn VALUES (300, 'abc'), (-300, 'de')")
    a.sql("SHOW WARNINGS")
    a.sql("SELECT 1 / 0 AS x, CAST('12abc' AS SIGNED) AS y")
    a.sql("SHOW WARNINGS")
    a.sql("SHOW COUNT(*) WARNINGS")
    a.sql("DROP TABLE IF EXISTS fid_no_such_table")
    a.sql("SHOW WARNINGS")
    a.sql("DROP TABLE fid_warn")


@script
def errors(run: Run) -> None:
    setup(
        run,
        "DROP TABLE IF EXISTS fid_err",
        "CREATE TABLE fid_err (id INT PRIMARY KEY, s VARCHAR(3), CHECK (id < 100))",
        "INSERT INTO fid_err VALUES (1, 'a')",
    )
    a = run.session()
    a.sql("SELEC 1")
    a.sql("SELECT * FROM fid_no_such_table")
    a.sql("SELECT nope FROM fid_err")
    a.sql("INSERT INTO fid_err VALUES (1, 'b')")
    a.sql("INSERT INTO fid_err VALUES (200, 'c')")
    a.sql("SET SESSION sql_mode = 'STRICT_ALL_TABLES'")
    a.sql("INSERT INTO fid_err VALUES (2, 'toolong')")
    a.sql("SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'custom failure', MYSQL_ERRNO = 1644")
    a.sql("SIGNAL SQLSTATE '01000' SET MESSAGE_TEXT = 'only a warning'")
    a.sql("SELECT 'still usable' AS after_errors")
    a.sql("DROP TABLE fid_err")


@script
def transactions(run: Run) -> None:
    setup(run, "DROP TABLE IF EXISTS fid_tx", "CREATE TABLE fid_tx (id INT PRIMARY KEY)")
    a = run.session()
    a.sql("BEGIN")
    a.sql("INSERT INTO fid_tx VALUES (1)")
    a.sql("SAVEPOINT s1")
    a.sql("INSERT INTO fid_tx VALUES (2)")
    a.sql("ROLLBACK TO SAVEPOINT s1")
    a.sql("SELECT id FROM fid_tx")
    a.sql("COMMIT")
    a.sql("START TRANSACTION READ ONLY")
    a.sql("INSERT INTO fid_tx VALUES (3)")
    a.sql("ROLLBACK")
    a.sql("SET autocommit = 0")
    a.sql("INSERT INTO fid_tx VALUES (4)")
    a.sql("SELECT COUNT(*) FROM fid_tx")
    a.sql("ROLLBACK")
    a.sql("SET autocommit = 1")
    a.sql("INSERT INTO fid_tx VALUES (1)")  # a duplicate: ERR outside a transaction
    a.sql("SELECT id FROM fid_tx ORDER BY id")
    a.sql("DROP TABLE fid_tx")


@script
def multi_statements(run: Run) -> None:
    setup(run, "DROP TABLE IF EXISTS fid_multi", "CREATE TABLE fid_multi (id INT PRIMARY KEY)")
    a = run.session(client_flag=CLIENT.MULTI_STATEMENTS)
    a.sql("SELECT 1 AS a; SELECT 2 AS b, 3 AS c")
    a.sql(
        "INSERT INTO fid_multi VALUES (1), (2); UPDATE fid_multi SET id = id + 10;"
        " SELECT * FROM fid_multi"
    )
    a.sql("SELECT 1 AS ok_first; SELECT nope; SELECT 3 AS never")
    a.sql("BEGIN; DELETE FROM fid_multi; ROLLBACK; SELECT COUNT(*) FROM fid_multi")
    a.sql("DROP TABLE fid_multi")


@script
def procedures(run: Run) -> None:
    setup(
        run,
        "DROP PROCEDURE IF EXISTS fid_proc",
        "CREATE PROCEDURE fid_proc(IN n INT)"
        " BEGIN SELECT n AS first_set; SELECT n * 2 AS second_set, 'x' AS tag; END",
    )
    a = run.session()
    a.sql("CALL fid_proc(21)")
    a.sql("CALL fid_no_such_proc()")
    a.sql("SELECT 'after' AS call_done")
    setup(run, "DROP PROCEDURE fid_proc")


@script
def session_settings(run: Run) -> None:
    a = run.session()
    a.sql("SET NAMES latin1")
    a.sql("SELECT 'caf\xe9' AS word, @@character_set_client, @@character_set_results")
    a.sql("SET NAMES utf8mb4")
    a.sql("SET SESSION time_zone = '+02:00'")
    a.sql("SELECT @@session.time_zone, CONVERT_TZ('2024-01-01 00:00:00', '+00:00', @@time_zone)")
    a.step("COM_INIT_DB mysql", lambda conn: conn.select_db("mysql"))
    a.sql("SELECT DATABASE()")
    a.step("COM_INIT_DB missing", lambda conn: conn.select_db("fid_no_such_db"))
    a.sql("SELECT DATABASE()")
    a.sql("USE test")
    a.sql("SELECT DATABASE()")
    a.sql("SET @fid_user_var := 42")
    a.sql("SELECT @fid_user_var")


@script
def large_results(run: Run) -> None:
    a = run.session()
    a.sql("SELECT REPEAT('x', 70000) AS wide")
    a.sql("SELECT seq, REPEAT('r', seq % 50) AS pad FROM seq_1_to_3000")
    a.sql("SELECT REPEAT('y', 8 * 1024 * 1024) AS eight_mib")


@script
def commands(run: Run) -> None:
    a = run.session()
    a.step("COM_PING", lambda conn: conn.ping(reconnect=False))
    a.sql("BEGIN")
    a.step("COM_PING in a transaction", lambda conn: conn.ping(reconnect=False))
    a.sql("COMMIT")
    a.sql("SELECT 1 AS empty_query_follows")
    a.sql("/* only a comment */")
    a.sql("")


@script
def prepared_statements(run: Run) -> None:
    setup(
        run,
        "DROP TABLE IF EXISTS fid_ps",
        "CREATE TABLE fid_ps (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(10),"
        " d DATETIME(3), n DECIMAL(8,2), f DOUBLE, b BLOB)",
    )
    a = run.session()
    calc = a.prepare("SELECT ? + 1 AS x, CONCAT(?, 'z') AS s, ? IS NULL AS n")
    a.execute(calc, 41, "a", 0)
    a.execute(calc, 1, "b", 2, send_types=False)  # types as bound by the first execute
    a.execute(calc, 2, None, None)
    insert = a.prepare("INSERT INTO fid_ps (v, d, n, f, b) VALUES (?, ?, ?, ?, ?)")
    a.execute(insert, "one", "2024-02-29 12:34:56.789", "12.50", 0.25, b"\x00\xff")
    a.execute(insert, "two", None, "-1", 1e300, b"")
    a.execute(insert, "way too long for ten", None, None, None, None)
    select = a.prepare("SELECT * FROM fid_ps WHERE id >= ? ORDER BY id")
    a.execute(select, 1)
    a.reset(select)
    a.execute(select, 2)
    a.prepare("SELECT nope FROM fid_ps")
    a.close_statement(calc)
    a.sql("SELECT 'after close' AS done")
    a.sql("DROP TABLE fid_ps")


@script
def unknown_statement(run: Run) -> None:
    a = run.session()
    a.command("COM_STMT_EXECUTE of an id never prepared", mm.com_stmt_execute(999_999))
    a.sql("SELECT 'usable' AS after_error")


@script
def prepared_across_connections(run: Run) -> None:
    # Through the proxy (pool of 2) session b's open transactions hold a server
    # connection, so a's executes run where its statement was never prepared: the proxy
    # prepares it again there and binds the types a sent with its first execute only.
    a = run.session("a")
    b = run.session("b")
    stmt = a.prepare("SELECT ? * 2 AS twice, CONCAT('<', ?, '>') AS wrapped")
    a.execute(stmt, 21, "x")
    for i in range(3):
        b.sql("BEGIN")
        b.sql(f"SELECT {i} AS holding")
        a.execute(stmt, i, f"v{i}", send_types=False)
        b.sql("COMMIT")
        a.execute(stmt, -i, "", send_types=False)
