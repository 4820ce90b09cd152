"""Failover: the proxy follows a promoted standby; idle clients stay connected."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from .conftest import ProxyHandle, upstream_from_dsn

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_failover_to_promoted_standby(pg_server_factory: Any, proxy_factory: Any) -> None:
    primary = pg_server_factory(replication=True, max_connections=30)
    standby = pg_server_factory.standby_of(primary, max_connections=30)
    up = upstream_from_dsn(primary.dsn)
    up.hosts = [("127.0.0.1", primary.port), ("127.0.0.1", standby.port)]
    handle: ProxyHandle = proxy_factory(
        upstream=up, connection_borrow_timeout=30, health_check_interval=0.5, pool_size=3
    )
    idle = psycopg.connect(handle.dsn(), autocommit=True)
    busy = psycopg.connect(handle.dsn())
    try:
        assert idle.execute("select inet_server_port()").fetchone() == (primary.port,)
        busy.execute("select 1")  # holds a server connection inside a transaction

        primary.kill()
        with pytest.raises(psycopg.OperationalError):  # only in-flight work fails
            busy.execute("select 2")

        promoter = threading.Timer(1.0, standby.promote)
        promoter.start()
        started = time.monotonic()
        # The idle client was never disconnected; its next transaction is held until
        # the standby is promoted, then runs there.
        row = idle.execute("select inet_server_port(), pg_is_in_recovery()").fetchone()
        assert row == (standby.port, False)
        assert time.monotonic() - started < 30
        promoter.join(30)
        assert handle.proxy.pool.primary == ("127.0.0.1", standby.port)
    finally:
        idle.close()
        busy.close()
