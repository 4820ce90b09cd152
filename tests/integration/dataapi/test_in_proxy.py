"""The Data API inside the proxy process: its connection source is the proxy's own
listener, so statements share the proxy's server pool and show up in its stats."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fleetpool.proxy")
from fleetpool.dataapi.embedded import config_for_proxy, start_in_proxy
from tests.integration.dataapi.helpers import ARNS, KEY_ID, SECRET, ApiHandle, db_rows

pytestmark = pytest.mark.integration


@pytest.fixture
def proxied(pg_dsn: str) -> Iterator[tuple[ApiHandle, Any]]:
    # Start the proxy the way tests/integration/proxy/conftest.py does.
    from fleetpool.proxy import ProxyConfig
    from tests.integration.proxy.conftest import start_proxy, upstream_from_dsn

    handle = start_proxy(
        ProxyConfig(
            upstream=upstream_from_dsn(pg_dsn),
            listen=("127.0.0.1", 0),
            pool_size=3,
            users={"app": "app-secret"},
            server_login="upstream",
            connection_borrow_timeout=30.0,
            shutdown_timeout=2.0,
            data_api_listen="127.0.0.1:0",
            data_api={"access_keys": {KEY_ID: SECRET}, "pool_size": 20},
        )
    )
    server = handle.proxy.data_api  # started by the proxy itself (data_api_listen)
    api = ApiHandle(server, handle.loop, handle.thread, "postgresql", pg_dsn)
    try:
        yield api, handle
    finally:
        handle.stop()  # stops the Data API first


def test_statements_go_through_the_proxy_pool(
    proxied: tuple[ApiHandle, Any], unique_name: str
) -> None:
    api, handle = proxied
    rds = api.client(max_pool_connections=40)
    table = "p_" + unique_name.split("-")[1]
    rds.execute_statement(**ARNS, sql=f"CREATE TABLE {table} (id int primary key, n int)")
    rds.execute_statement(**ARNS, sql=f"INSERT INTO {table} VALUES (1, 0)")
    tx = rds.begin_transaction(**ARNS)["transactionId"]
    rds.execute_statement(**ARNS, sql=f"UPDATE {table} SET n = 100 WHERE id = 1", transactionId=tx)
    rds.rollback_transaction(**ARNS, transactionId=tx)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                rds.execute_statement(**ARNS, sql=f"UPDATE {table} SET n = n + 1 WHERE id = 1")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert db_rows("postgresql", api.dsn, f"SELECT n FROM {table}") == [(200,)]
    # 20 Data API connections are clients of the proxy; the database sees only the
    # proxy's server connections (which carry the application_name it replays): <= 3.
    assert api.call(lambda: len(handle.proxy.clients)) >= 20
    backends = db_rows(
        "postgresql",
        api.dsn,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fleetpool-data-api'",
    )
    assert 1 <= backends[0][0] <= 3


def test_token_login_to_the_proxy(pg_dsn: str) -> None:
    from fleetpool.proxy import ProxyConfig
    from tests.integration.proxy.conftest import start_proxy, upstream_from_dsn

    handle = start_proxy(
        ProxyConfig(
            upstream=upstream_from_dsn(pg_dsn),
            listen=("127.0.0.1", 0),
            pool_size=2,
            users={"app": "md5" + "0" * 32},  # no plain-text password to reuse
            token_secret="proxy-token-secret",
            shutdown_timeout=2.0,
        )
    )
    try:
        proxy = handle.proxy
        cfg = config_for_proxy(proxy.cfg, "127.0.0.1:0", {"access_keys": {KEY_ID: SECRET}})

        async def start() -> Any:
            return await start_in_proxy(proxy.cfg, proxy.port, cfg)

        server = asyncio.run_coroutine_threadsafe(start(), handle.loop).result(30)
        api = ApiHandle(server, handle.loop, handle.thread, "postgresql", pg_dsn)
        assert api.client().execute_statement(**ARNS, sql="SELECT 7")["records"] == [
            [{"longValue": 7}]
        ]
        asyncio.run_coroutine_threadsafe(server.stop(2.0), handle.loop).result(30)
    finally:
        handle.stop()
