"""sysbench through the proxy in transaction mode: its default server-side prepared
statements (prepared once per client connection, executed on whichever server connection
each transaction borrows) and its read-write transactions, more client threads than server
connections, no error, and the server never sees more sessions than the pool."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fleetpool_testing import MariaDBServer, MissingBinary, require_binary
from fleetpool_testing.sysbench import sysbench
from tests.fix_servers import ServerFactory

from .conftest import PASSWORD, USER, MySQLProxy

pytestmark = pytest.mark.integration

POOL = 3
THREADS = 8  # more clients than server connections: transactions wait for one


@pytest.fixture
def server(mysql_server_factory: ServerFactory[MariaDBServer]) -> MariaDBServer:
    try:
        require_binary("sysbench")
    except MissingBinary as exc:
        pytest.skip(str(exc))
    return mysql_server_factory(max_connections=20)


def peak_sessions(server: MariaDBServer, run: Callable[[], Any]) -> int:
    """The most sessions the server held at once during ``run()``, not counting the one
    that asks (``FLUSH STATUS`` resets the high-water mark to the sessions open now)."""
    server.execute("FLUSH STATUS")
    run()
    rows = server.execute("SHOW GLOBAL STATUS LIKE 'Max_used_connections'")
    assert rows
    return int(rows[0][1]) - 1


@pytest.mark.parametrize("test", ["oltp_point_select", "oltp_read_write"])
def test_sysbench(
    server: MariaDBServer, mysql_proxy_factory: Callable[..., MySQLProxy], test: str
) -> None:
    proxy = mysql_proxy_factory(upstream_url=server.dsn, pool_size=POOL)
    common: dict[str, Any] = {
        "port": proxy.port,
        "user": USER,
        "password": PASSWORD,
        "database": proxy.database,
        "table_size": 2000,
    }
    sysbench(test, "prepare", **common)  # DDL and bulk inserts through the proxy too
    runs = []
    peak = peak_sessions(
        server,
        lambda: runs.append(sysbench(test, "run", threads=THREADS, seconds=3, **common)),
    )
    (run,) = runs
    assert run.transactions > 0
    if test == "oltp_point_select":
        assert run.ignored_errors == 0, run.output
    else:
        # sysbench retries deadlocks (1213) and lock wait timeouts (1205): any other error
        # fails the run (exit status checked by sysbench()). A few retries happen directly
        # too, but a proxy that mixed up transactions would produce them by the hundred.
        assert run.ignored_errors <= max(10, run.transactions // 20), run.output
    assert run.reconnects == 0, run.output
    assert 1 <= peak <= POOL, f"the server saw {peak} sessions with a pool of {POOL}"
    # Its prepared statements and transactions never pinned a client to a connection.
    assert proxy.proxy.stats.pins == {}
    sysbench(test, "cleanup", **common)
