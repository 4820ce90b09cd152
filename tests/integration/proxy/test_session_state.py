"""Session state never leaks between clients; session-state statements pin."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

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


def test_set_pins_the_client_and_others_never_see_it(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=2)
    with (
        psycopg.connect(handle.dsn(), autocommit=True) as a,
        psycopg.connect(handle.dsn(), autocommit=True) as b,
    ):
        a.execute("SET statement_timeout = '4343ms'")
        pid_a = backend_pid(a)
        for _ in range(5):
            assert backend_pid(b) != pid_a
            assert b.execute("SHOW statement_timeout").fetchone() == ("0",)
            assert backend_pid(a) == pid_a  # pinned
            assert a.execute("SHOW statement_timeout").fetchone() == ("4343ms",)
        assert handle.proxy.stats.pinned_total == 1
        clients = handle.call(lambda: [(c.pinned, c.pin_reason) for c in handle.proxy.clients])
        assert (True, "SET") in clients
    # After a disconnects, its backend is reset (DISCARD ALL) before reuse.
    with psycopg.connect(handle.dsn(), autocommit=True) as c:
        for _ in range(4):
            assert c.execute("SHOW statement_timeout").fetchone() == ("0",)


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


def test_exclude_variable_sets_does_not_pin(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=2, exclude_variable_sets=True)
    with psycopg.connect(handle.dsn(), autocommit=True) as a:
        a.execute("SET application_name = 'x'")
    assert handle.proxy.stats.pinned_total == 0


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
    a.execute("SET statement_timeout = '2222ms'")  # pins, and opens a transaction
    a.execute("CREATE TEMP TABLE fp_left (a int)")
    pid = backend_pid(a)
    a.close()  # leaves with the transaction open
    with psycopg.connect(handle.dsn(), autocommit=True) as b:
        assert backend_pid(b) == pid  # the connection was rolled back, reset and reused
        assert b.execute("SHOW statement_timeout").fetchone() == ("0",)
        assert b.execute("select to_regclass('fp_left')").fetchone() == (None,)
