"""Targets for the fidelity scripts: the shared throwaway PostgreSQL, and one fleetpool
proxy (transaction mode) in front of it for the whole module."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from fleetpool.proxy import ProxyConfig
from fleetpool.proxy.config import Upstream

from ..conftest import PASSWORD, USER, start_proxy
from .driver import Target


@pytest.fixture(scope="session")
def direct_target(pg_dsn: str, upstream: Upstream) -> Target:
    info = conninfo_to_dict(pg_dsn)
    host, port = upstream.hosts[0]
    return Target(
        "direct", host, port, upstream.user, str(info.get("password") or ""), upstream.database
    )


@pytest.fixture(scope="module")
def proxy_target(upstream: Upstream) -> Iterator[Target]:
    cfg = ProxyConfig(
        upstream=upstream,
        listen=("127.0.0.1", 0),
        mode="transaction",
        pool_size=2,
        users={USER: PASSWORD},
        server_login="upstream",  # "app" is the proxy's user; the server knows the upstream's
        connection_borrow_timeout=10.0,
        client_login_timeout=10.0,
        shutdown_timeout=2.0,
    )
    handle = start_proxy(cfg)
    try:
        yield Target("proxy", "127.0.0.1", handle.port, USER, PASSWORD, upstream.database)
    finally:
        handle.stop()


@pytest.fixture(scope="module", autouse=True)
def _drop_script_tables(pg_dsn: str) -> Iterator[None]:
    """Scripts keep their tables between the two runs (same OIDs); drop them after."""
    yield
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        names = conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'fidelity\\_%'"
        ).fetchall()
        for (name,) in names:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
