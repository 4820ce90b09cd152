"""The MySQL proxy as operators run it: the admin console through the mariadb command
line and its roles, failed logins throttled, budget leases, failover to the server
that became writable, TLS to the server verified, several worker processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from fleetpool.budget import open_budget
from fleetpool.proxy.config import Upstream
from fleetpool_testing import MissingBinary
from tests.tls_certs import TestCA

from .conftest import PASSWORD, USER, MySQLProxy

pytestmark = pytest.mark.integration

SRC = Path(__file__).resolve().parents[4] / "src"


def mariadb_cli() -> str:
    binary = shutil.which("mariadb") or shutil.which("mysql")
    if binary is None:
        pytest.skip("the mariadb client is not installed (apt-get install mariadb-client)")
    return binary


def cli(port: int, user: str, password: str, database: str, sql: str) -> Any:
    return subprocess.run(
        [mariadb_cli(), "--protocol=TCP", "-h", "127.0.0.1", "-P", str(port), "-u", user,
         f"-p{password}", "--skip-ssl", "--batch", database, "-e", sql],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_admin_console_through_the_command_line(
    mysql_proxy_factory: Callable[..., MySQLProxy],
) -> None:
    proxy = mysql_proxy_factory(
        users={USER: PASSWORD, "ops": "ops-pw", "watcher": "watch-pw"},
        admin_users=["ops"],
        stats_users=["watcher"],
    )
    with pymysql.connect(**proxy.kwargs()) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")  # a pool with a server connection to show
    shown = cli(proxy.port, "ops", "ops-pw", "fleetpool", "SHOW POOLS; SHOW CLIENTS")
    assert shown.returncode == 0, shown.stderr
    header = shown.stdout.splitlines()[0].split("\t")
    assert "database" in header and "cl_active" in header and "sv_idle" in header
    paused = cli(proxy.port, "ops", "ops-pw", "fleetpool", "PAUSE; RESUME")
    assert paused.returncode == 0, paused.stderr
    # stats_users may look, not act.
    looked = cli(proxy.port, "watcher", "watch-pw", "fleetpool", "SHOW STATS")
    assert looked.returncode == 0, looked.stderr
    acted = cli(proxy.port, "watcher", "watch-pw", "fleetpool", "PAUSE")
    assert acted.returncode != 0 and "admin_users" in acted.stderr
    # Anyone else is told what an unknown database tells them.
    refused = cli(proxy.port, USER, PASSWORD, "fleetpool", "SHOW POOLS")
    assert refused.returncode != 0 and "Unknown database 'fleetpool'" in refused.stderr
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(**proxy.kwargs(database="no_such_database_here"))
    assert info.value.args[0] == 1049


def test_failed_logins_are_refused_later_and_later(
    mysql_proxy_factory: Callable[..., MySQLProxy],
) -> None:
    proxy = mysql_proxy_factory(login_delay=0.2, login_delay_max=1.0, login_ban_after=0)
    took = []
    for _ in range(3):
        started = time.monotonic()
        with pytest.raises(pymysql.err.OperationalError) as info:
            pymysql.connect(**proxy.kwargs(password="wrong"), connect_timeout=10)
        took.append(time.monotonic() - started)
        assert info.value.args[0] == 1045 and "Access denied" in info.value.args[1]
    # 0.2 s, 0.4 s, 0.8 s: doubling per recent failure of the address.
    assert took[0] >= 0.15 and took[2] >= 0.7 and took[2] > took[0]
    # The right password still logs in, at once.
    with pymysql.connect(**proxy.kwargs()) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
    assert proxy.proxy.stats.auth_failures == 3


def test_server_connections_are_budget_leases(
    mysql_proxy_factory: Callable[..., MySQLProxy], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    budget = open_budget(url, "mysql-db")
    budget.configure(limit=1)
    proxy = mysql_proxy_factory(
        pool_size=3, budget_url=url, budget_name="mysql-db", connection_borrow_timeout=1.5
    )
    a = pymysql.connect(**proxy.kwargs())
    b = pymysql.connect(**proxy.kwargs())
    try:
        a.begin()
        with a.cursor() as cur:
            cur.execute("SELECT 1")  # takes the budget's only lease
        assert [x.function for x in budget.leases()] == ["proxy"]
        with pytest.raises(pymysql.err.OperationalError) as info, b.cursor() as cur:
            cur.execute("SELECT 1")  # the pool has room, the budget has not
        assert info.value.args[0] == 1040 and "no connections left" in info.value.args[1]
        a.commit()
        with b.cursor() as cur:  # the lease's connection is idle again: b gets it
            cur.execute("SELECT 2")
            assert cur.fetchone() == (2,)
    finally:
        a.close()
        b.close()
        budget.close()


def test_failover_follows_the_server_that_became_writable(
    mysql_server_factory: Any, mysql_proxy_factory: Callable[..., MySQLProxy]
) -> None:
    first = mysql_server_factory()
    second = mysql_server_factory()
    second.execute("SET GLOBAL read_only = 1")
    up = Upstream(
        [(first.host, first.port), (second.host, second.port)], "root", "", "test", engine="mysql"
    )
    proxy = mysql_proxy_factory(
        upstream=up, pool_size=2, health_check_interval=0.5, connection_borrow_timeout=30
    )
    client = pymysql.connect(**proxy.kwargs(autocommit=True))
    try:
        with client.cursor() as cur:
            cur.execute("SELECT @@port")
            assert cur.fetchone() == (first.port,)
        first.kill()
        promoter = threading.Timer(1.0, second.execute, ("SET GLOBAL read_only = 0",))
        promoter.start()
        started = time.monotonic()
        # The client stays connected; its next statement waits for a writer and runs there.
        with client.cursor() as cur:
            cur.execute("SELECT @@port, @@read_only")
            assert cur.fetchone() == (second.port, 0)
        assert time.monotonic() - started < 30
        promoter.join(10)
    finally:
        client.close()


@pytest.fixture
def tls_mariadb(mysql_server_factory: Any) -> Iterator[tuple[Any, TestCA, TestCA]]:
    from fleetpool_testing.processes import run_user

    # Not under pytest's tmp_path: the server's account cannot enter that.
    folder = Path(tempfile.mkdtemp(prefix="fleetpool-mysql-tls-"))
    ca, other = TestCA(folder), TestCA(folder, "another CA")
    right = ca.issue("server", "db.test", dns=("localhost",), ips=("127.0.0.1",))
    os.chmod(folder, 0o755)
    user = run_user("mysql")
    if user is not None:
        for path in folder.iterdir():
            os.chown(path, user.pw_uid, user.pw_gid)
    try:
        server = mysql_server_factory(
            settings={"ssl_cert": str(right.cert), "ssl_key": str(right.key)}
        )
    except MissingBinary as exc:  # pragma: no cover
        pytest.skip(str(exc))
    try:
        yield server, ca, other
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_tls_to_the_server_is_verified(
    tls_mariadb: tuple[Any, TestCA, TestCA], mysql_proxy_factory: Callable[..., MySQLProxy]
) -> None:
    server, ca, other = tls_mariadb
    up = Upstream([(server.host, server.port)], "root", "", "test", engine="mysql")
    good = mysql_proxy_factory(upstream=up, server_tls="verify-full", server_ca_file=str(ca.path))
    with pymysql.connect(**good.kwargs()) as conn, conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        row = cur.fetchone()
        assert row is not None and row[1]  # the proxy's server connection is encrypted
    bad = mysql_proxy_factory(
        upstream=up,
        server_tls="verify-full",
        server_ca_file=str(other.path),
        connection_borrow_timeout=5,
    )
    with pytest.raises(pymysql.err.OperationalError) as info:
        conn = pymysql.connect(**bad.kwargs())
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    text = str(info.value.args[1])
    assert f"127.0.0.1:{server.port}" in text and "certificate" in text, text


def test_several_workers_share_the_port_and_kill_across_them(
    mysql_dsn: str, tmp_path: Path
) -> None:
    listen = free_port()
    config = tmp_path / "proxy.toml"
    config.write_text(
        f'upstream = "{mysql_dsn}"\nlisten = "127.0.0.1:{listen}"\n'
        "pool_size = 4\nworkers = 2\nshutdown_timeout = 5\n"
        f'server_login = "upstream"\n[users]\n{USER} = "{PASSWORD}"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetpool.proxy", "--config", str(config)],
        env=dict(os.environ, PYTHONPATH=str(SRC)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    kwargs = {"host": "127.0.0.1", "port": listen, "user": USER, "password": PASSWORD}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                pymysql.connect(**kwargs, connect_timeout=2).close()
                break
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        time.sleep(0.5)  # let the second worker bind too
        clients = [pymysql.connect(**kwargs, autocommit=True) for _ in range(12)]
        workers = {c.thread_id() >> 22 for c in clients}  # connection ids carry the worker
        assert len(workers) == 2, workers
        # KILL QUERY from a client of one worker to a client of the other.
        victim = clients[0]
        killer = next(c for c in clients if c.thread_id() >> 22 != victim.thread_id() >> 22)
        outcome: dict[str, Any] = {}

        def sleeper() -> None:
            started = time.monotonic()
            with victim.cursor() as cur:
                try:
                    cur.execute("SELECT SLEEP(30)")
                    outcome["value"] = cur.fetchone()
                except pymysql.err.MySQLError as exc:
                    outcome["error"] = exc
            outcome["seconds"] = time.monotonic() - started

        thread = threading.Thread(target=sleeper)
        thread.start()
        time.sleep(0.5)
        with killer.cursor() as cur:
            cur.execute(f"KILL QUERY {victim.thread_id()}")
        thread.join(20)
        assert outcome["seconds"] < 10, outcome
        for c in clients:
            c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
