"""Admin console (virtual database ``fleetpool``), /metrics and /status."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

import psycopg
import pytest

from .conftest import ProxyHandle

pytestmark = pytest.mark.integration


def admin(handle: ProxyHandle) -> psycopg.Connection[Any]:
    dsn = handle.dsn().rsplit("/", 1)[0] + "/fleetpool"
    return psycopg.connect(dsn, autocommit=True)


def test_show_commands(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=3, admin_users=["app"])
    with psycopg.connect(handle.dsn(), autocommit=True) as app, admin(handle) as console:
        app.execute("SET application_name = 'pinned-app'")  # tracked: does not pin
        app.execute("LISTEN fp_admin_chan")  # pins
        cur = console.execute("SHOW POOLS")
        cols = [d.name for d in cur.description or []]
        row = dict(zip(cols, cur.fetchone() or (), strict=True))
        assert row["pool_mode"] == "transaction" and row["pool_size"] == "3"
        assert row["cl_pinned"] == "1" and row["sv_active"] == "1"
        clients = console.execute("SHOW CLIENTS").fetchall()
        cols = [d.name for d in console.execute("SHOW CLIENTS").description or []]
        rows = [dict(zip(cols, r, strict=True)) for r in clients]
        pinned = [r for r in rows if r["pinned"] == "True"]
        assert [(r["pin_reason"], r["application_name"]) for r in pinned] == [
            ("LISTEN", "pinned-app")
        ]
        servers = console.execute("SHOW SERVERS").fetchall()
        assert len(servers) == 1
        stats = dict(console.execute("SHOW TOTALS").fetchall())
        assert int(stats["pinned_sessions_total"]) == 1
        assert int(stats["pins_by_reason:LISTEN"]) == 1
        with pytest.raises(psycopg.errors.SyntaxError):
            console.execute("SHOW NONSENSE")


def test_pause_and_resume(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(pool_size=2, admin_users=["app"])
    with admin(handle) as console, psycopg.connect(handle.dsn(), autocommit=True) as app:
        app.execute("select 1")
        console.execute("PAUSE")
        done = threading.Event()

        def query() -> None:
            app.execute("select 2")
            done.set()

        t = threading.Thread(target=query)
        t.start()
        assert not done.wait(0.5)  # held while paused
        console.execute("RESUME")
        assert done.wait(10)
        t.join(10)
        console.execute("RELOAD")
        assert app.execute("select 3").fetchone() == (3,)


def test_metrics_and_status(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(admin_listen=("127.0.0.1", 0))
    with psycopg.connect(handle.dsn(), autocommit=True) as app:
        for _ in range(3):
            app.execute("select 1")
        port = handle.proxy.admin.port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as resp:
            status = json.loads(resp.read())
        assert status["client_connections"] == 1
        assert status["borrows_total"] >= 3
        assert status["mode"] == "transaction"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        # connections by state, not one number per state; latencies as histograms only
        assert 'fleetpool_proxy_client_connections{state="idle"} 1.0' in text
        assert 'fleetpool_proxy_client_connections{state="active"} 0.0' in text
        assert 'fleetpool_proxy_database_connections{state="idle"} 1.0' in text
        assert "fleetpool_proxy_borrows_total" in text
        assert "fleetpool_proxy_borrow_latency_seconds_bucket" in text
        assert "p99" not in text and "fleetpool_proxy_client_connections_active" not in text
    deadline = time.monotonic() + 5
    while handle.proxy.clients and time.monotonic() < deadline:
        time.sleep(0.02)


def test_reload_rereads_the_config_file(upstream: Any, tmp_path: Any) -> None:
    from fleetpool.proxy import load_config

    from .conftest import start_proxy

    host, port = upstream.hosts[0]
    url = f"postgresql://{upstream.user}:{upstream.password}@{host}:{port}/{upstream.database}"
    path = tmp_path / "proxy.toml"
    body = f'upstream = "{url}"\nlisten = "127.0.0.1:0"\npool_size = 2\n'
    body += 'server_login = "upstream"\nadmin_users = ["app", "new"]\n'
    path.write_text(body + '[users]\napp = "app-secret"\n')
    handle = start_proxy(load_config(path), config_path=str(path))
    try:
        assert handle.proxy.pool.max_size == 2
        path.write_text(body.replace("pool_size = 2", "pool_size = 5") + '[users]\nnew = "pw2"\n')
        with admin(handle) as console:
            console.execute("RELOAD")
        assert handle.proxy.pool.max_size == 5
        with psycopg.connect(handle.dsn(user="new", password="pw2")) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(handle.dsn())  # "app" is gone
        path.write_text("pool_size = oops\n")
        second = handle.__class__(handle.proxy, handle.loop, handle.thread, "new", "pw2")
        with admin(second) as c2, pytest.raises(psycopg.Error, match="RELOAD failed"):
            c2.execute("RELOAD")
        assert handle.proxy.pool.max_size == 5  # a broken file changes nothing
    finally:
        handle.stop()
