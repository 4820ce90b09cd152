"""Queueing, timeouts, cancel, bad clients and dying servers."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg import errors

from fleetpool.pg import messages as m
from fleetpool.pg.codec import StartupMessage

from .conftest import ProxyHandle

pytestmark = pytest.mark.integration


def test_borrow_timeout_gives_53300_and_the_client_survives(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=1, connection_borrow_timeout=0.5)
    with (
        psycopg.connect(handle.dsn()) as holder,
        psycopg.connect(handle.dsn(), autocommit=True) as waiter,
    ):
        holder.execute("select 1")  # transaction open: the only server is taken
        started = time.monotonic()
        with pytest.raises(errors.TooManyConnections, match="connection_borrow_timeout"):
            waiter.execute("select 2")
        assert 0.4 < time.monotonic() - started < 5
        holder.commit()
        assert waiter.execute("select 3").fetchone() == (3,)  # still usable
        assert handle.proxy.stats.borrow_timeouts == 1


def test_queued_clients_are_served_in_order(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=1)
    results: list[int] = []

    def worker(i: int) -> None:
        with psycopg.connect(handle.dsn(), autocommit=True) as conn:
            conn.execute("select pg_sleep(0.05)")
            results.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == list(range(6))
    assert len(handle.proxy.pool.servers) == 1


def test_cancel_request_reaches_the_right_backend(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=2)
    with (
        psycopg.connect(handle.dsn(), autocommit=True) as conn,
        psycopg.connect(handle.dsn(), autocommit=True) as other,
    ):
        # cancel_safe(): the blocking cancel() holds the GIL in libpq, and this
        # proxy runs in a thread of the test process.
        timer = threading.Timer(0.5, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(errors.QueryCanceled):
            conn.execute("select pg_sleep(20)")
        assert time.monotonic() - started < 10
        timer.join()
        assert other.execute("select 1").fetchone() == (1,)
        assert conn.execute("select 2").fetchone() == (2,)


def test_asyncpg_timeout_cancels_through_the_proxy(proxy: ProxyHandle) -> None:
    import asyncio

    import asyncpg

    async def main() -> None:
        conn = await asyncpg.connect(proxy.dsn())
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await conn.fetchval("select pg_sleep(20)", timeout=0.5)
        assert time.monotonic() - started < 10
        assert await conn.fetchval("select 7") == 7
        await conn.close()

    asyncio.run(main())


def raw_login(handle: ProxyHandle) -> socket.socket:
    """Log in with cleartext password (proxy configured for it) over a raw socket."""
    sock = socket.create_connection(("127.0.0.1", handle.port), timeout=10)
    database = handle.proxy.cfg.upstream.database
    sock.sendall(StartupMessage({"user": handle.user, "database": database}).encode())
    buf = b""
    while b"Z\x00\x00\x00\x05I" not in buf:
        chunk = sock.recv(65536)
        assert chunk, buf
        buf += chunk
        if b"R\x00\x00\x00\x08\x00\x00\x00\x03" in buf:
            sock.sendall(m.password_message(handle.password.encode()))
            buf = b""
    return sock


def recv_all(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return out
        if not chunk:
            return out
        out += chunk


def test_oversized_message_closes_only_that_client(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(max_message_size=1024, auth_method="password")
    with psycopg.connect(handle.dsn(), autocommit=True) as good:
        bad = raw_login(handle)
        bad.sendall(b"Q" + struct.pack("!i", 10_000_000) + b"select ")
        reply = recv_all(bad)
        fields = m.parse_error_fields(reply[5:])
        assert fields["C"] == "08P01" and "max_message_size" in fields["M"]
        bad.close()
        assert good.execute("select 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError):
            good.execute("select repeat('x', 2000) || %s", ("y" * 2000,))
    assert handle.proxy.stats.protocol_errors >= 1


def test_garbage_bytes_close_only_that_client(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(auth_method="password")
    with psycopg.connect(handle.dsn(), autocommit=True) as good:
        bad = raw_login(handle)
        bad.sendall(b"Q" + struct.pack("!i", 2) + b"\xff" * 10)
        reply = recv_all(bad)
        assert m.parse_error_fields(reply[5:])["C"] == "08P01"
        assert good.execute("select 1").fetchone() == (1,)


def test_server_dying_mid_transaction_fails_only_that_client(
    proxy_factory: Any, direct: psycopg.Connection[Any]
) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=2)
    with (
        psycopg.connect(handle.dsn()) as victim,
        psycopg.connect(handle.dsn(), autocommit=True) as bystander,
    ):
        row = victim.execute("select pg_backend_pid()").fetchone()
        assert row is not None
        direct.execute("select pg_terminate_backend(%s)", (row[0],))
        with pytest.raises(psycopg.OperationalError):
            victim.execute("select 1")
        for _ in range(3):
            assert bystander.execute("select 1").fetchone() == (1,)
    with psycopg.connect(handle.dsn(), autocommit=True) as fresh:
        assert fresh.execute("select 1").fetchone() == (1,)


def test_server_dying_between_transactions_is_invisible(
    proxy_factory: Any, direct: psycopg.Connection[Any]
) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=1)
    with psycopg.connect(handle.dsn(), autocommit=True) as conn:
        row = conn.execute("select pg_backend_pid()").fetchone()
        assert row is not None
        direct.execute("select pg_terminate_backend(%s)", (row[0],))
        deadline = time.monotonic() + 5
        while handle.proxy.pool.servers and time.monotonic() < deadline:
            time.sleep(0.02)
        assert conn.execute("select 42").fetchone() == (42,)


def test_max_client_connections(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(max_client_connections=2)
    with (
        psycopg.connect(handle.dsn(), autocommit=True),
        psycopg.connect(handle.dsn(), autocommit=True),
        pytest.raises(psycopg.OperationalError, match="too many client connections"),
    ):
        psycopg.connect(handle.dsn())


def test_client_idle_timeout(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(client_idle_timeout=0.5)
    with psycopg.connect(handle.dsn(), autocommit=True) as conn:
        conn.execute("select 1")
        time.sleep(2.2)  # the janitor runs once a second
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select 1")


def test_login_timeout(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(client_login_timeout=0.3)
    sock = socket.create_connection(("127.0.0.1", handle.port), timeout=10)
    started = time.monotonic()
    sock.sendall(b"\x00\x00")  # half a startup packet, then nothing
    reply = recv_all(sock)  # the proxy hangs up (with a FATAL 08006) well before 10 s
    assert time.monotonic() - started < 5
    assert reply == b"" or m.parse_error_fields(reply[5:])["C"] == "08006"
    sock.close()


def test_pool_maintenance_min_idle_idle_timeout_lifetime(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=4, min_idle=2, idle_timeout=0.5)
    deadline = time.monotonic() + 10
    while len(handle.proxy.pool.idle) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(handle.proxy.pool.idle) == 2  # min_idle opened without any client
    conns = [psycopg.connect(handle.dsn()) for _ in range(4)]
    for conn in conns:
        conn.execute("select 1")  # four transactions open at once
    assert len(handle.proxy.pool.servers) == 4
    for conn in conns:
        conn.close()
    deadline = time.monotonic() + 10
    while len(handle.proxy.pool.servers) > 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(handle.proxy.pool.servers) == 2  # idle_timeout trimmed down to min_idle


def test_max_lifetime_recycles(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=1, max_lifetime=0.3, lifetime_jitter=0.0)
    with psycopg.connect(handle.dsn(), autocommit=True) as conn:
        first = conn.execute("select pg_backend_pid()").fetchone()
        time.sleep(0.5)
        second = conn.execute("select pg_backend_pid()").fetchone()
        assert first != second


def test_init_query_runs_on_new_server_connections(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(init_query="SET work_mem = '7MB'")
    with psycopg.connect(handle.dsn(), autocommit=True) as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("7MB",)
    assert handle.proxy.stats.pinned_total == 0


def test_graceful_shutdown_lets_the_transaction_finish(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory()
    conn = psycopg.connect(handle.dsn())
    conn.execute("select 1")  # in a transaction
    stopper = threading.Thread(target=handle.stop, kwargs={"timeout": 5.0})
    stopper.start()
    time.sleep(0.3)
    assert conn.execute("select 2").fetchone() == (2,)
    conn.commit()
    stopper.join(15)
    assert not stopper.is_alive()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("select 3")
    conn.close()


def test_idle_connections_are_health_checked(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(health_check_interval=0.3)
    with psycopg.connect(handle.dsn(), autocommit=True) as conn:
        conn.execute("select 1")
        first = handle.call(lambda: [s.last_checked for s in handle.proxy.pool.servers])
        time.sleep(2.5)  # janitor ticks once a second
        later = handle.call(lambda: [s.last_checked for s in handle.proxy.pool.servers])
        assert later and later[0] > first[0]
        assert conn.execute("select 2").fetchone() == (2,)


def test_newer_protocol_minor_is_negotiated_down(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(auth_method="trust")
    sock = socket.create_connection(("127.0.0.1", handle.port), timeout=10)
    database = handle.proxy.cfg.upstream.database
    startup = StartupMessage(
        {"user": handle.user, "database": database, "_pq_.fancy": "1"}, protocol=(3 << 16) | 2
    )
    sock.sendall(startup.encode())
    buf = b""
    while b"Z\x00\x00\x00\x05I" not in buf:
        chunk = sock.recv(65536)
        assert chunk
        buf += chunk
    assert buf[:1] == b"v"
    newest, count = struct.unpack("!ii", buf[5:13])
    assert (newest, count) == (3 << 16, 1) and b"_pq_.fancy" in buf  # as PostgreSQL says
    sock.close()
