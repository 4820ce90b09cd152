"""The proxy as a command: several SO_REUSEPORT workers, cancel routing, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from .conftest import upstream_from_dsn

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SRC = Path(__file__).resolve().parents[3] / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def proxy_process(pg_dsn: str, tmp_path: Path) -> Any:
    up = upstream_from_dsn(pg_dsn)
    host, port = up.hosts[0]
    listen = free_port()
    admin_port = free_port()
    config = tmp_path / "proxy.toml"
    config.write_text(
        f'upstream = "postgresql://{up.user}:{up.password}@{host}:{port}/{up.database}"\n'
        f'listen = "127.0.0.1:{listen}"\n'
        "pool_size = 4\nworkers = 2\nshutdown_timeout = 5\n"
        f'admin_listen = "127.0.0.1:{admin_port}"\n'
        'log_format = "json"\nserver_login = "upstream"\nadmin_users = ["app"]\n'
        '[users]\napp = "pw"\n'
    )
    env = dict(os.environ, PYTHONPATH=str(SRC))
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetpool.proxy", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: teardown reaches the workers
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(
                f"postgresql://app:pw@127.0.0.1:{listen}/{up.database}", connect_timeout=2
            ) as c:
                c.execute("select 1")
            break
        except psycopg.OperationalError:
            time.sleep(0.2)
    time.sleep(0.5)  # let the second worker bind too
    proc.admin_port = admin_port  # type: ignore[attr-defined]
    try:
        yield proc, f"postgresql://app:pw@127.0.0.1:{listen}/{up.database}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the parent forwards it to its workers
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
        except ProcessLookupError:
            pass
        proc.wait(10)


def test_cancel_is_routed_to_the_owning_worker(proxy_process: Any) -> None:
    _proc, dsn = proxy_process
    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(6)]
    try:
        for conn in conns:  # the kernel spreads these over both workers
            timer = threading.Timer(0.3, conn.cancel_safe)
            timer.start()
            started = time.monotonic()
            with pytest.raises(errors.QueryCanceled):
                conn.execute("select pg_sleep(15)")
            assert time.monotonic() - started < 10
            timer.join()
    finally:
        for conn in conns:
            conn.close()


def test_sigterm_drains_and_exits(proxy_process: Any) -> None:
    proc, dsn = proxy_process
    conn = psycopg.connect(dsn)
    conn.execute("select 1")  # mid-transaction when SIGTERM arrives
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert conn.execute("select 2").fetchone() == (2,)
    conn.commit()
    assert proc.wait(15) == 0
    conn.close()
    _out, err = proc.communicate(timeout=5)
    assert '"level": "info"' in err and "draining" in err  # structured JSON logs


def test_status_sums_all_workers(proxy_process: Any) -> None:
    import json
    import urllib.request

    proc, dsn = proxy_process
    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(8)]
    try:
        for conn in conns:
            conn.execute("select 1")
        url = f"http://127.0.0.1:{proc.admin_port}/status"
        status: dict[str, Any] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # other workers publish once a second
            with urllib.request.urlopen(url, timeout=5) as resp:
                status = json.loads(resp.read())
            # (all 8 may land on one worker: wait for the other's report too)
            if status.get("client_connections") == 8 and status.get("workers_reporting") == 2:
                break
            time.sleep(0.3)
        assert status["workers_reporting"] == 2
        assert status["client_connections"] == 8
        assert status["max_database_connections"] == 4  # 2 + 2: the budget is split
    finally:
        for conn in conns:
            conn.close()


def test_admin_console_sees_and_steers_every_worker(proxy_process: Any) -> None:
    _proc, dsn = proxy_process
    admin_dsn = dsn.rsplit("/", 1)[0] + "/fleetpool"
    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(8)]
    try:
        for conn in conns:
            conn.execute("select 1")
        with psycopg.connect(admin_dsn, autocommit=True) as console:
            rows: list[Any] = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # siblings publish once a second
                rows = console.execute("SHOW CLIENTS").fetchall()
                if len(rows) == 9:  # the 8 clients and this console, on any worker
                    break
                time.sleep(0.3)
            assert len(rows) == 9
            workers = console.execute("SHOW WORKERS").fetchall()
            assert sorted(int(r[0]) for r in workers) == [0, 1]
            # PAUSE reaches every worker: no client gets a server connection until RESUME.
            console.execute("PAUSE")
            done: list[int] = []

            def query(i: int) -> None:
                conns[i].execute("select 2")
                done.append(i)

            threads = [threading.Thread(target=query, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            time.sleep(0.7)
            assert done == []
            console.execute("RESUME")
            for t in threads:
                t.join(15)
            assert sorted(done) == list(range(8))
            # RECONNECT retires every server connection; WAIT_CLOSE waits for it.
            console.execute("RECONNECT")
            console.execute("WAIT_CLOSE")
            stats = dict(console.execute("SHOW TOTALS").fetchall())
            assert int(stats["database_connections_retiring"]) == 0
    finally:
        for conn in conns:
            conn.close()
