"""Nothing an invocation leaves in its session is visible to the next one (both engines).

Each case runs a "dirty" invocation, then checks from the next invocation on the
same warm connection (same server session id) that the state is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import pytest

from tests.integration.client.helpers import admin, one, rows

Check = Callable[[Any], None]


def _raises(conn: Any, sql: str) -> None:
    try:
        rows(conn, sql)
    except Exception:
        if hasattr(conn, "pgconn"):
            conn.rollback()
        return
    raise AssertionError(f"{sql!r} should have failed: the state leaked")


PG_CASES: dict[str, tuple[list[str], Check]] = {
    "set": (
        ["SET search_path = nowhere"],
        lambda c: assert_eq(one(c, "SHOW search_path"), '"$user", public'),
    ),
    "set_config": (
        ["SELECT set_config('TimeZone', 'Asia/Tokyo', false)"],
        lambda c: assert_ne(one(c, "SHOW TimeZone"), "Asia/Tokyo"),
    ),
    "temp_table": (
        ["CREATE TEMP TABLE fp_tmp (a int)"],
        lambda c: assert_eq(one(c, "SELECT to_regclass('pg_temp.fp_tmp')"), None),
    ),
    "advisory_lock": (
        ["SELECT pg_advisory_lock(4242)"],
        lambda c: assert_eq(
            one(
                c,
                "SELECT count(*) FROM pg_locks"
                " WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            ),
            0,
        ),
    ),
    "prepared": (
        ["PREPARE fp_p AS SELECT 1"],
        lambda c: assert_eq(
            one(c, "SELECT count(*) FROM pg_prepared_statements WHERE from_sql"), 0
        ),
    ),
    "listen": (
        ["LISTEN fp_chan"],
        lambda c: assert_eq(one(c, "SELECT count(*) FROM pg_listening_channels()"), 0),
    ),
    "open_transaction": (
        ["BEGIN", "CREATE TABLE IF NOT EXISTS fp_t (a int)", "INSERT INTO fp_t VALUES (1)"],
        lambda c: assert_eq(one(c, "SELECT count(*) FROM pg_class WHERE relname = 'fp_t'"), 0),
    ),
    "failed_transaction": (["BEGIN", "SELECT 1/0"], lambda c: assert_eq(one(c, "SELECT 1"), 1)),
    "held_cursor": (
        ["BEGIN", "DECLARE fp_c CURSOR WITH HOLD FOR SELECT 1", "COMMIT"],
        lambda c: assert_eq(one(c, "SELECT count(*) FROM pg_cursors"), 0),
    ),
    "role": (
        ["SET ROLE pg_monitor"],
        lambda c: assert_eq(one(c, "SELECT current_user"), one(c, "SELECT session_user")),
    ),
}

MY_CASES: dict[str, tuple[list[str], Check]] = {
    "set": (
        ["SET SESSION sql_mode = 'ANSI_QUOTES'"],
        lambda c: assert_ne(one(c, "SELECT @@sql_mode"), "ANSI_QUOTES"),
    ),
    "user_variable": (["SET @fp_v = 42"], lambda c: assert_eq(one(c, "SELECT @fp_v"), None)),
    "user_variable_select": (
        ["SELECT @fp_w := 42"],
        lambda c: assert_eq(one(c, "SELECT @fp_w"), None),
    ),
    "temp_table": (
        ["CREATE TEMPORARY TABLE fp_tmp (a int)"],
        lambda c: rows(c, "CREATE TEMPORARY TABLE fp_tmp (a int)"),
    ),
    "named_lock": (
        ["SELECT GET_LOCK('fp_lock', 0)"],
        lambda c: assert_eq(one(c, "SELECT IS_USED_LOCK('fp_lock')"), None),
    ),
    "prepared": (["PREPARE fp_s FROM 'SELECT 1'"], lambda c: _raises(c, "EXECUTE fp_s")),
    "open_transaction": (
        ["CREATE TABLE IF NOT EXISTS fp_t (a int)", "BEGIN", "INSERT INTO fp_t VALUES (1)"],
        lambda c: assert_eq(one(c, "SELECT count(*) FROM fp_t"), 0),
    ),
    "lock_tables": (
        ["CREATE TABLE IF NOT EXISTS fp_t (a int)", "LOCK TABLES fp_t READ"],
        lambda c: assert_eq(one(c, "SELECT count(*) FROM information_schema.tables WHERE 1=0"), 0),
    ),
    "charset": (
        ["SET NAMES latin1"],
        lambda c: assert_eq(one(c, "SELECT @@character_set_client"), "utf8mb4"),
    ),
}


def assert_eq(a: object, b: object) -> None:
    assert a == b, f"{a!r} != {b!r}"


def assert_ne(a: object, b: object) -> None:
    assert a != b, f"{a!r} == {b!r}"


def _cases(engine: str) -> dict[str, tuple[list[str], Check]]:
    return PG_CASES if engine == "postgresql" else MY_CASES


CASES = [("postgresql", c) for c in PG_CASES] + [("mysql", c) for c in MY_CASES]


@pytest.mark.parametrize(("engine_name", "case"), CASES)
def test_state_is_gone_in_the_next_invocation(
    request: pytest.FixtureRequest, make_db: Any, engine_name: str, case: str
) -> None:
    dsn = request.getfixturevalue("pg_dsn" if engine_name == "postgresql" else "mysql_dsn")
    statements, check = _cases(engine_name)[case]
    db = make_db(dsn)
    if engine_name == "mysql":
        with db.connection() as conn:
            rows(conn, "DROP TABLE IF EXISTS fp_t")
    with db.connection() as conn:
        sid = db.session_id
    expect = pytest.raises(Exception) if case == "failed_transaction" else nullcontext()
    with expect, db.connection() as conn:
        for sql in statements:
            rows(conn, sql)
    with db.connection() as conn:
        assert db.session_id == sid, "reset should keep the warm session"
        assert db.stats.resets + db.stats.rollbacks == 1
        check(conn)
        if engine_name == "mysql":
            # The timeouts survive the reset.
            assert one(conn, "SELECT @@wait_timeout") == int(db.idle_timeout)
        else:
            assert one(conn, "SHOW idle_session_timeout") != "0"
            assert one(conn, "SHOW application_name") == db.tag


def test_clean_invocations_make_no_reset_round_trip(dsn: str, make_db: Any) -> None:
    db = make_db(dsn)
    for _ in range(20):
        with db.connection() as conn:
            assert one(conn, "SELECT 1") == 1
        with db.transaction() as conn:
            one(conn, "SELECT 2")
    assert (db.stats.resets, db.stats.rollbacks, db.stats.connects) == (0, 0, 1)


def test_psycopg_prepared_cache_survives_reset(pg_dsn: str, make_db: Any) -> None:
    db = make_db(pg_dsn)
    for i in range(8):  # psycopg prepares a statement after 5 executions
        with db.connection() as conn:
            assert one(conn, "SELECT %s::int + 1", (i,)) == i + 1
    with db.connection() as conn:
        assert one(conn, "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql") >= 1
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("PREPARE mine AS SELECT 1")
    for i in range(3):
        with db.connection() as conn:
            assert one(conn, "SELECT %s::int + 1", (i,)) == i + 1
    assert db.stats.resets == 1


def test_state_set_inside_a_function_is_caught_by_parameter_status(
    pg_dsn: str, make_db: Any, unique_name: str
) -> None:
    fn = unique_name.replace("-", "_")
    admin(
        pg_dsn,
        f"CREATE FUNCTION {fn}() RETURNS void LANGUAGE plpgsql AS "
        "$$BEGIN EXECUTE 'SET TIME ZONE ''Asia/Tokyo'''; END$$",
    )
    db = make_db(pg_dsn)
    with db.connection() as conn:
        conn.execute(f"SELECT {fn}()")
    with db.connection() as conn:
        assert one(conn, "SHOW TimeZone") != "Asia/Tokyo"


def test_client_side_changes_are_restored(pg_dsn: str, make_db: Any) -> None:
    from psycopg.rows import dict_row

    db = make_db(pg_dsn)
    with db.connection() as conn:
        conn.autocommit = False
        conn.row_factory = dict_row
        conn.execute("SELECT 1")
    with db.connection() as conn:
        assert conn.autocommit is True
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_transaction_commits_and_rolls_back(dsn: str, make_db: Any, unique_name: str) -> None:
    table = unique_name.replace("-", "_")
    auto = "SERIAL" if dsn.startswith("postgres") else "INT AUTO_INCREMENT"
    admin(dsn, f"CREATE TABLE {table} (id {auto} PRIMARY KEY, ref INT)")
    db = make_db(dsn)
    with db.transaction() as conn:
        if dsn.startswith("postgres"):
            new_id = one(conn, f"INSERT INTO {table} (ref) VALUES (0) RETURNING id")
        else:
            rows(conn, f"INSERT INTO {table} (ref) VALUES (0)")
            new_id = one(conn, "SELECT LAST_INSERT_ID()")
        rows(conn, f"INSERT INTO {table} (ref) VALUES (%s)", (new_id,))
    with pytest.raises(ZeroDivisionError), db.transaction() as conn:
        rows(conn, f"INSERT INTO {table} (ref) VALUES (99)")
        raise ZeroDivisionError
    assert admin(dsn, f"SELECT ref FROM {table} ORDER BY id") == [(0,), (new_id,)]
    assert db.stats.resets == 0


def test_handler_checks_in_after_exceptions(dsn: str, make_db: Any) -> None:
    db = make_db(dsn)
    calls: list[int] = []

    @db.handler
    def handler(event: dict[str, Any], context: object) -> int:
        with db.connection() as conn:
            rows(conn, "BEGIN")
            with db.connection() as inner:  # nested: same checkout
                assert inner is conn
            calls.append(one(conn, "SELECT 1"))
        if event.get("fail"):
            raise RuntimeError("boom")
        return len(calls)

    with pytest.raises(RuntimeError):
        handler({"fail": True}, None)
    assert handler({}, None) == 2
    assert db.stats.rollbacks == 2  # the open transaction, after each invocation


def test_handler_without_database_use_never_connects(dsn: str, make_db: Any) -> None:
    db = make_db(dsn)
    assert db.handler(lambda e, c: "ok")({}, None) == "ok"
    assert db.stats.connects == 0
