"""Requests that wait for a server connection, through a real proxy and PostgreSQL.

The pool is paused while the clients send, so every request is queued (the fast
path keeps a plain Query as received and forwards it when a connection frees up);
resuming hands the connections over first come, first served. Each client must get
its own answer, with its own parameters, and the session-changing request must still
pin its client.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from fleetpool.proxy import Proxy, ProxyConfig
from fleetpool.proxy.config import Upstream
from fleetpool.proxy.runner import new_event_loop

USER, PASSWORD = "app", "app-secret"
# A plain query (no word that the session-effect pre-check looks twice at).
QUERY = "SELECT {}, application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"


class RunningProxy:
    """A proxy on its own event loop in a thread."""

    def __init__(self, cfg: ProxyConfig) -> None:
        self.loop = new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = Proxy(cfg)
        self.call(self.proxy.start, wait=True)

    def call(self, fn: Callable[[], Any], wait: bool = False) -> Any:
        """Run ``fn`` on the proxy's loop (awaiting its result if ``wait``)."""

        async def wrapper() -> Any:
            result = fn()
            return await result if wait else result

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(30)

    def dsn(self, **params: str) -> str:
        extra = "".join(f" {k}={v}" for k, v in params.items())
        return (
            f"host=127.0.0.1 port={self.proxy.port} user={USER} password={PASSWORD} "
            f"dbname={self.proxy.cfg.upstream.database}{extra}"
        )

    def stop(self) -> None:
        self.call(lambda: self.proxy.stop(2.0), wait=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def proxy_factory(pg_dsn: str) -> Iterator[Callable[..., RunningProxy]]:
    info = conninfo_to_dict(pg_dsn)
    host = str(info.get("host") or "127.0.0.1")
    upstream = Upstream(
        hosts=[("127.0.0.1" if host.startswith("/") else host, int(info.get("port") or 5432))],
        user=str(info.get("user") or "postgres"),
        password=str(info.get("password") or ""),
        database=str(info.get("dbname") or "postgres"),
    )
    started: list[RunningProxy] = []

    def factory(**settings: Any) -> RunningProxy:
        cfg = ProxyConfig(
            upstream=upstream,
            listen=("127.0.0.1", 0),
            users={USER: PASSWORD},
            server_login="upstream",
            mode="transaction",
            client_login_timeout=10.0,
            shutdown_timeout=2.0,
            **settings,
        )
        started.append(RunningProxy(cfg))
        return started[-1]

    yield factory
    for running in started:
        running.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_queued_requests_get_their_own_answers(
    proxy_factory: Callable[..., RunningProxy],
) -> None:
    running = proxy_factory(pool_size=2, connection_borrow_timeout=10.0)
    proxy = running.proxy
    names = ["a", "a", "b", "b", "", "", "", ""]
    conns = [
        psycopg.connect(running.dsn(**({"application_name": n} if n else {})), autocommit=True)
        for n in names
    ]
    setter = psycopg.connect(running.dsn(), autocommit=True)
    try:
        for conn in [*conns, setter]:
            conn.execute("SELECT 1").fetchall()  # logged in; the pool has its connections
        # What a client that sets no application_name sees (as directly: empty).
        default = setter.execute(QUERY.format(0)).fetchone()[1]  # type: ignore[index]
        running.call(lambda: setattr(proxy.pool, "paused", True))

        def ask(i: int) -> tuple[int, str]:
            # No parameters: psycopg sends one simple Query.
            row = conns[i].execute(QUERY.format(i)).fetchone()
            assert row is not None
            return row[0], row[1]

        def set_path() -> None:
            setter.execute("SET search_path = pg_catalog, public")

        with ThreadPoolExecutor(len(conns) + 1) as pool:
            answers = [pool.submit(ask, i) for i in range(len(conns))]
            setting = pool.submit(set_path)
            wait_for(lambda: running.call(lambda: len(proxy.pool.waiters)) == len(conns) + 1)
            kept = running.call(lambda: sum(c._queued is not None for c in proxy.pool.waiters))
            assert kept == len(conns)  # the SET waits in the general buffer
            running.call(proxy.pool.resume)
            results = [a.result(30) for a in answers]
            setting.result(30)
        assert results == [(i, n or default) for i, n in enumerate(names)]
        pinned = running.call(lambda: [c.pinned for c in proxy.clients])
        assert pinned.count(True) == 0  # a SET is tracked and replayed, not pinned
        assert setter.execute("SHOW search_path").fetchone() == ("pg_catalog, public",)
        # Everything queued went through: the connections are back in the pool.
        for i, conn in enumerate(conns):
            assert conn.execute(f"SELECT {i} + 1").fetchone() == (i + 1,)
    finally:
        for conn in [*conns, setter]:
            conn.close()


def test_queued_request_times_out_and_the_client_goes_on(
    proxy_factory: Callable[..., RunningProxy],
) -> None:
    running = proxy_factory(pool_size=1, connection_borrow_timeout=0.3)
    proxy = running.proxy
    with psycopg.connect(running.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        running.call(lambda: setattr(proxy.pool, "paused", True))
        with pytest.raises(psycopg.OperationalError, match="connection_borrow_timeout"):
            conn.execute("SELECT 2")
        running.call(proxy.pool.resume)
        assert conn.execute("SELECT 3").fetchone() == (3,)
        assert proxy.stats.borrow_timeouts == 1
