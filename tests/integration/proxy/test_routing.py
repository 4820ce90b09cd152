"""One pool per (database, server login): the login and database follow the client."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg import errors

from fleetpool.proxy.config import parse_route

from .conftest import ProxyHandle

pytestmark = pytest.mark.integration


@pytest.fixture
def reader(direct: psycopg.Connection[Any], unique_name: str) -> Any:
    role = unique_name.replace("-", "_")
    db = f"{role}_db"
    direct.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'reader-pw'")
    direct.execute(f"CREATE DATABASE {db}")
    yield role, db
    direct.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (db,)
    )
    time.sleep(0.2)
    direct.execute(f"DROP DATABASE IF EXISTS {db}")
    direct.execute(f"DROP ROLE IF EXISTS {role}")


def test_login_and_database_follow_the_client(proxy_factory: Any, reader: Any) -> None:
    role, db = reader
    handle: ProxyHandle = proxy_factory(
        users={role: "reader-pw", "app": "app-secret"}, server_login="client", pool_size=4
    )
    with psycopg.connect(handle.dsn(user=role, password="reader-pw"), autocommit=True) as conn:
        assert conn.execute("select current_user, current_database()").fetchone() == (
            role,
            handle.proxy.cfg.upstream.database,
        )
    other = handle.dsn(user=role, password="reader-pw").rsplit("/", 1)[0] + f"/{db}"
    with psycopg.connect(other, autocommit=True) as conn:
        assert conn.execute("select current_user, current_database()").fetchone() == (role, db)
    pools = handle.call(lambda: sorted((p.database, p.user) for p in handle.proxy.router))
    assert (db, role) in pools and (handle.proxy.cfg.upstream.database, role) in pools
    # "app" has no server role: the proxy says why instead of logging in as someone else.
    with pytest.raises(psycopg.OperationalError, match='role "app" does not exist'):
        psycopg.connect(handle.dsn(), connect_timeout=10)


def test_server_login_upstream_maps_every_user_to_the_upstream(
    proxy_factory: Any, reader: Any
) -> None:
    _role, db = reader
    handle: ProxyHandle = proxy_factory(server_login="upstream")
    other = handle.dsn().rsplit("/", 1)[0] + f"/{db}"
    with psycopg.connect(other, autocommit=True) as conn:
        user, database = conn.execute("select current_user, current_database()").fetchone()  # type: ignore[misc]
    assert (user, database) == (handle.proxy.cfg.upstream.user, db)


def test_databases_table_routes_and_refuses_unknown_names(
    proxy_factory: Any, reader: Any, upstream: Any
) -> None:
    role, db = reader
    host, port = upstream.hosts[0]
    url = f"postgresql://{role}:reader-pw@{host}:{port}/{db}"
    handle: ProxyHandle = proxy_factory(
        databases={"reports": parse_route("reports", {"upstream": url, "pool_size": 1}, upstream)}
    )
    reports = handle.dsn().rsplit("/", 1)[0] + "/reports"
    with psycopg.connect(reports, autocommit=True) as conn:
        assert conn.execute("select current_user, current_database()").fetchone() == (role, db)
    with pytest.raises(psycopg.OperationalError, match='database "postgres" does not exist'):
        psycopg.connect(handle.dsn(), connect_timeout=10)  # not in [databases]


def test_pools_share_one_cap(proxy_factory: Any, reader: Any, direct: Any) -> None:
    role, db = reader
    handle: ProxyHandle = proxy_factory(
        users={role: "reader-pw"}, server_login="client", pool_size=2
    )
    base = handle.dsn(user=role, password="reader-pw").rsplit("/", 1)[0]
    dsns = [f"{base}/{handle.proxy.cfg.upstream.database}", f"{base}/{db}"]
    conns = [psycopg.connect(d, autocommit=True) for d in dsns for _ in range(3)]
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            row = direct.execute(
                "select count(*) from pg_stat_activity where usename = %s", (role,)
            ).fetchone()
            peak = max(peak, int(row[0]))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        threads = [
            threading.Thread(
                target=lambda c=c: [c.execute("select pg_sleep(0.01)") for _ in range(15)]
            )
            for c in conns
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        stop.set()
        watcher.join(10)
        for c in conns:
            c.close()
    assert 1 <= peak <= 2  # both pools served, never above the shared cap
    shown = handle.call(lambda: handle.proxy.inspector.pools())
    assert {r["database"] for r in shown} >= {db}


def test_show_pools_lists_every_pool(proxy_factory: Any, reader: Any) -> None:
    role, db = reader
    handle: ProxyHandle = proxy_factory(
        users={role: "reader-pw"}, server_login="client", stats_users=[role]
    )
    base = handle.dsn(user=role, password="reader-pw").rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/{db}", autocommit=True) as conn:
        conn.execute("select 1")
        with psycopg.connect(f"{base}/fleetpool", autocommit=True) as console:
            rows = console.execute("SHOW POOLS").fetchall()
    assert any(r[0] == db and r[1] == role for r in rows)
    with pytest.raises(errors.OperationalError):
        psycopg.connect(f"{base}/fp_no_such_db", connect_timeout=10)
