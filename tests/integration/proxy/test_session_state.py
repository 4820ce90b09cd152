"""Session state never leaks between clients; session-state statements pin."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.cases.pg_session import CASES, Case

from .conftest import ProxyHandle

pytestmark = pytest.mark.integration


def backend_pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("select pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def test_set_local_stays_inside_the_transaction(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=1)
    with (
        psycopg.connect(handle.dsn(), autocommit=True) as a,
        psycopg.connect(handle.dsn(), autocommit=True) as b,
    ):
        with a.transaction():
            a.execute("SET LOCAL statement_timeout = '4242ms'")
            assert a.execute("SHOW statement_timeout").fetchone() == ("4242ms",)
        # one server connection: b now runs on the very backend a used
        assert b.execute("SHOW statement_timeout").fetchone() == ("0",)
        assert handle.proxy.stats.pinned_total == 0


def test_settings_follow_the_client_without_pinning(proxy_factory: Any) -> None:
    # One server connection, two clients taking turns on it: each sees its own
    # settings and never the other's, and neither is pinned.
    handle: ProxyHandle = proxy_factory(pool_size=1)
    with (
        psycopg.connect(handle.dsn(), autocommit=True) as a,
        psycopg.connect(handle.dsn(), autocommit=True, application_name="b-app") as b,
    ):
        a.execute("SET statement_timeout = '4343ms'")
        a.execute("SET search_path = pg_catalog, public")
        a.execute("SET application_name = 'a-app'")
        pids = set()
        for _ in range(5):
            pids.add(backend_pid(a))
            assert a.execute("SHOW statement_timeout").fetchone() == ("4343ms",)
            assert a.execute("SHOW search_path").fetchone() == ("pg_catalog, public",)
            assert a.execute("SHOW application_name").fetchone() == ("a-app",)
            pids.add(backend_pid(b))
            assert b.execute("SHOW statement_timeout").fetchone() == ("0",)
            assert b.execute("SHOW search_path").fetchone() == ('"$user", public',)
            assert b.execute("SHOW application_name").fetchone() == ("b-app",)
        assert len(pids) == 1  # both on the one server connection, in turn
        assert a.info.parameter_status("application_name") == "a-app"
        assert handle.proxy.stats.pinned_total == 0
        a.execute("RESET statement_timeout")
        assert a.execute("SHOW statement_timeout").fetchone() == ("0",)
        a.execute("RESET ALL")
        assert a.execute("SHOW search_path").fetchone() == ('"$user", public',)
        assert b.execute("SHOW application_name").fetchone() == ("b-app",)
        assert handle.proxy.stats.pinned_total == 0


def test_settings_in_transactions_follow_transaction_semantics(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=1)
    with (
        psycopg.connect(handle.dsn(), autocommit=True) as a,
        psycopg.connect(handle.dsn(), autocommit=True) as b,
    ):
        with a.transaction():
            a.execute("SET statement_timeout = '1111ms'")  # committed: kept
        assert b.execute("SHOW statement_timeout").fetchone() == ("0",)
        assert a.execute("SHOW statement_timeout").fetchone() == ("1111ms",)
        with pytest.raises(psycopg.errors.DivisionByZero), a.transaction():
            a.execute("SET statement_timeout = '2222ms'")  # rolled back: gone
            a.execute("select 1/0")
        assert a.execute("SHOW statement_timeout").fetchone() == ("1111ms",)
        a.execute("BEGIN; SET lock_timeout = '3333ms'; SAVEPOINT s; SET work_mem = '7MB'")
        a.execute("ROLLBACK TO SAVEPOINT s; COMMIT")
        assert a.execute("SHOW lock_timeout").fetchone() == ("3333ms",)
        assert a.execute("SHOW work_mem").fetchone() == ("4MB",)
        a.execute("select set_config('myapp.tenant', '42', false)")
        a.execute("select set_config('myapp.local', 'x', true)")
        assert b.execute("select current_setting('myapp.tenant', true)").fetchone() in [
            (None,),
            ("",),
        ]
        assert a.execute("select current_setting('myapp.tenant')").fetchone() == ("42",)
        assert a.execute("select current_setting('myapp.local', true)").fetchone() in [
            (None,),
            ("",),
        ]
        a.execute("DISCARD ALL")
        assert a.execute("SHOW statement_timeout").fetchone() == ("0",)
        assert b.execute("SHOW lock_timeout").fetchone() == ("0",)
        assert handle.proxy.stats.pinned_total == 0


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.probe is not None], ids=lambda c: c.sql[:50]
)
def test_no_state_reaches_another_client(proxy_factory: Any, case: Case) -> None:
    # Every vector of the shared table, on one server connection: a second client never
    # sees the first one's state, whether it was pinned (then reset when it left) or
    # tracked (then replayed only for its owner).
    handle: ProxyHandle = proxy_factory(pool_size=1, connection_borrow_timeout=10.0)
    assert case.probe is not None
    a = psycopg.connect(handle.dsn(), autocommit=True)
    try:
        a.execute(case.sql)
        if case.proxy == "pin":
            assert handle.proxy.stats.pins == {case.reason: 1}
            a.close()
        else:
            assert handle.proxy.stats.pinned_total == 0
            row = a.execute(case.probe).fetchone()
            if case.leaked is not True:
                assert row == (case.leaked,)  # the owner keeps its setting
        with psycopg.connect(handle.dsn(), autocommit=True) as b:
            row = b.execute(case.probe).fetchone()
            assert row is not None
            assert row[0] != case.leaked and row[0] is not True
    finally:
        a.close()


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TEMP TABLE fp_tmp (a int)",
        "SELECT pg_advisory_lock(4242)",
        "LISTEN fp_channel",
        "PREPARE fp_sql_prep AS SELECT 1",
    ],
)
def test_session_state_statements_pin(proxy_factory: Any, statement: str) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=2)
    with psycopg.connect(handle.dsn(), autocommit=True) as a:
        a.execute(statement)
        pid = backend_pid(a)
        with psycopg.connect(handle.dsn(), autocommit=True) as b:
            assert backend_pid(b) != pid
        assert backend_pid(a) == pid
    assert handle.proxy.stats.pinned_total == 1


def test_transaction_never_split_between_servers(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=3)
    conns = [psycopg.connect(handle.dsn()) for _ in range(6)]
    try:
        for _ in range(3):
            for group in (conns[:3], conns[3:]):
                pids = [backend_pid(conn) for conn in group]  # each opens a transaction
                assert len(set(pids)) == 3
                for conn, pid in zip(group, pids, strict=True):
                    conn.execute("select 1")
                    assert backend_pid(conn) == pid
                for conn in group:
                    conn.commit()
    finally:
        for conn in conns:
            conn.close()


def test_session_mode_resets_with_discard_all(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=1, mode="session")
    with psycopg.connect(handle.dsn(), autocommit=True) as a:
        a.execute("SET statement_timeout = '1234ms'")
        a.execute("CREATE TEMP TABLE fp_sess (a int)")
        pid = backend_pid(a)
    with psycopg.connect(handle.dsn(), autocommit=True) as b:
        assert backend_pid(b) == pid  # same backend, reused...
        assert b.execute("SHOW statement_timeout").fetchone() == ("0",)  # ...but reset
        assert b.execute("select to_regclass('fp_sess')").fetchone() == (None,)


def test_client_startup_parameters_follow_the_client(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=1)
    with (
        psycopg.connect(handle.dsn(), autocommit=True, application_name="alpha") as a,
        psycopg.connect(
            handle.dsn(), autocommit=True, application_name="beta", options="-c TimeZone=Asia/Tokyo"
        ) as b,
    ):
        for _ in range(3):
            assert a.execute("SHOW application_name").fetchone() == ("alpha",)
            assert b.execute("SHOW application_name").fetchone() == ("beta",)
            assert b.execute("SHOW TimeZone").fetchone() == ("Asia/Tokyo",)
            assert a.execute("SHOW TimeZone").fetchone() != ("Asia/Tokyo",)


def test_pinned_client_leaving_mid_transaction_is_cleaned(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=1)
    a = psycopg.connect(handle.dsn())
    a.execute("SET statement_timeout = '2222ms'")  # opens a transaction
    a.execute("CREATE TEMP TABLE fp_left (a int)")  # pins
    pid = backend_pid(a)
    a.close()  # leaves with the transaction open
    with psycopg.connect(handle.dsn(), autocommit=True) as b:
        assert backend_pid(b) == pid  # the connection was rolled back, reset and reused
        assert b.execute("SHOW statement_timeout").fetchone() == ("0",)
        assert b.execute("select to_regclass('fp_left')").fetchone() == (None,)


def test_pin_log_names_the_application_and_the_statement(
    proxy_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A pin is traced to its call site by the client's application_name and the
    # statement's first words; the statement's literals are not copied into the log.
    from fleetpool.proxy.events import record_fields

    handle: ProxyHandle = proxy_factory(pool_size=2)
    caplog.set_level("INFO", logger="fleetpool.proxy.events")
    with psycopg.connect(handle.dsn(), autocommit=True, application_name="billing-job") as a:
        a.execute("SELECT 1")
        a.execute("PREPARE fp_pin_log AS SELECT 'not-for-logs'::text")
    pins = [record_fields(r) for r in caplog.records if record_fields(r).get("event") == "pinned"]
    assert len(pins) == 1
    assert pins[0]["application_name"] == "billing-job"
    assert pins[0]["reason"] == "PREPARE"
    assert pins[0]["statement"].startswith("PREPARE fp_pin_log AS SELECT '?'")
    assert "not-for-logs" not in caplog.text
    assert "billing-job" in caplog.text
