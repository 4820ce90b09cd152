"""Protocol corners through the proxy: pipelines, errors, COPY, big results, NOTIFY."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from psycopg import errors

from .conftest import ProxyHandle

pytestmark = pytest.mark.integration


def test_pipeline_with_prepared_statements_and_an_error(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=2)
    with (
        psycopg.connect(handle.dsn(), autocommit=True, prepare_threshold=0) as a,
        psycopg.connect(handle.dsn(), autocommit=True, prepare_threshold=0) as b,
    ):
        for _ in range(3):
            with a.pipeline():
                c1 = a.execute("select %s::int + 1", (1,))
                c2 = a.execute("select %s::text || 'b'", ("a",))
                c3 = b.execute("select %s::int * 3", (3,))  # another client, other server
            assert c1.fetchone() == (2,) and c2.fetchone() == ("ab",) and c3.fetchone() == (9,)
        with pytest.raises(errors.DivisionByZero), a.pipeline():
            a.execute("select %s::int / 0", (1,))
            a.execute("select %s::int", (5,))
        # the failed batch left no confusion behind: statements still work everywhere
        for _ in range(4):
            assert a.execute("select %s::int + 1", (41,)).fetchone() == (42,)
            assert b.execute("select %s::int + 1", (41,)).fetchone() == (42,)


def test_bad_prepared_statement_then_good_one(proxy: ProxyHandle) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True, prepare_threshold=0) as conn:
        with pytest.raises(errors.UndefinedTable):
            conn.execute("select * from fp_no_such_table where a = %s", (1,))
        assert conn.execute("select %s::int", (1,)).fetchone() == (1,)
        conn.execute("create table if not exists fp_late (a int)")
        try:
            conn.execute("select * from fp_late where a = %s", (1,))
            assert conn.execute("select count(*) from fp_late where a = %s", (1,)).fetchone() == (
                0,
            )
        finally:
            conn.execute("drop table fp_late")


def test_copy_in_and_out_with_psycopg(proxy: ProxyHandle) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("drop table if exists fp_copy2")
        conn.execute("create table fp_copy2 (a int, b text)")
        try:
            with conn.cursor() as cur:
                with cur.copy("COPY fp_copy2 FROM STDIN") as copy:
                    for i in range(5000):
                        copy.write_row((i, f"row {i}"))
                assert conn.execute("select count(*) from fp_copy2").fetchone() == (5000,)
                out = bytearray()
                with cur.copy("COPY fp_copy2 TO STDOUT") as copy:
                    for data in copy:
                        out += data
                assert out.count(b"\n") == 5000
        finally:
            conn.execute("drop table fp_copy2")


def test_large_result_and_large_parameter(proxy: ProxyHandle) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        rows = conn.execute("select repeat('x', 1000) from generate_series(1, 20000)").fetchall()
        assert len(rows) == 20000
        big = "y" * 3_000_000
        assert conn.execute("select length(%s)", (big,)).fetchone() == (3_000_000,)


def test_listen_notify_pins_and_delivers(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=2)
    with (
        psycopg.connect(handle.dsn(), autocommit=True) as listener,
        psycopg.connect(handle.dsn(), autocommit=True) as sender,
    ):
        listener.execute("LISTEN fp_chan")
        sender.execute("NOTIFY fp_chan, 'hello'")
        got = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            got = [n.payload for n in listener.notifies(timeout=0.5, stop_after=1)]
        assert got == ["hello"]


def test_max_connections_percent(pg_server_factory: Any, proxy_factory: Any) -> None:
    from .conftest import upstream_from_dsn

    server = pg_server_factory(max_connections=40)
    handle: ProxyHandle = proxy_factory(
        upstream=upstream_from_dsn(server.dsn), pool_size=2, max_connections_percent=25
    )
    assert handle.proxy.pool.max_size == 10


def test_prepared_statement_cap_deallocates(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=1, max_prepared_statements=3)
    with psycopg.connect(handle.dsn(), autocommit=True, prepare_threshold=0) as conn:
        for round_ in range(2):
            for i in range(6):
                assert conn.execute(f"select {i} + %s::int", (round_,)).fetchone() == (i + round_,)
        server_prepared = handle.call(lambda: [s.prepared_count for s in handle.proxy.pool.servers])
        assert max(server_prepared) <= 4
