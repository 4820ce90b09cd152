"""Migrating from PgBouncer: the same pgbouncer.ini and userlist.txt run a real PgBouncer
and fleetpool's proxy (--pgbouncer-ini); clients see the same databases and logins, and
the admin console (database "pgbouncer") answers PgBouncer's SHOW commands with
PgBouncer's column names, in PgBouncer's order, where the two overlap."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from fleetpool.proxy.pgbouncer import load_pgbouncer_ini
from fleetpool_testing import MissingBinary, PgBouncerServer, free_port

from .conftest import ProxyHandle, start_proxy

USERS = '"app" "app-pw"\n"admin" "admin-pw"\n'
COMMANDS = ["POOLS", "CLIENTS", "SERVERS", "STATS", "STATS_TOTALS", "DATABASES", "USERS"]


def ini(pg_port: int) -> str:
    return f"""\
[databases]
app = host=127.0.0.1 port={pg_port} dbname=app
reports = host=127.0.0.1 port={pg_port} dbname=app user=reporter password=reporter-pw

[pgbouncer]
auth_type = scram-sha-256
auth_file = users.txt
admin_users = admin
pool_mode = transaction
max_client_conn = 500
default_pool_size = 5
ignore_startup_parameters = extra_float_digits
"""


@pytest.fixture
def pair(pg_server_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """A PgBouncer and a fleetpool proxy from the same files: name -> port."""
    server = pg_server_factory(auth="scram-sha-256", password="super-pw")
    server.execute("CREATE ROLE app LOGIN PASSWORD 'app-pw'")
    server.execute("CREATE ROLE reporter LOGIN PASSWORD 'reporter-pw'")
    server.execute("CREATE DATABASE app OWNER app")
    text = ini(server.port)
    try:
        bouncer = PgBouncerServer(text, {"users.txt": USERS}).start()
    except MissingBinary as exc:
        pytest.skip(str(exc))
    handle: ProxyHandle | None = None
    try:
        # PgBouncer reads a relative auth_file from its working directory: so does this.
        monkeypatch.chdir(bouncer.tmpdir)
        (bouncer.tmpdir / "fleetpool.ini").write_text(text)
        cfg = load_pgbouncer_ini("fleetpool.ini", listen=f"127.0.0.1:{free_port()}")
        handle = start_proxy(cfg)
        yield {"pgbouncer": bouncer.port, "fleetpool": handle.port}
    finally:
        if handle is not None:
            handle.stop()
        bouncer.close()


def connect(port: int, user: str, password: str, database: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1", port=port, user=user, password=password, dbname=database,
        autocommit=True, prepare_threshold=None, connect_timeout=10,
    )  # fmt: skip


def test_same_files_same_databases_and_logins(pair: dict[str, int]) -> None:
    for name, port in pair.items():
        with connect(port, "app", "app-pw", "app") as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == (
                "app",
                "app",
            ), name
            for _ in range(5):
                conn.execute("SELECT 1")
        with connect(port, "app", "app-pw", "reports") as conn:  # user= forces the login
            assert conn.execute("SELECT current_user").fetchone() == ("reporter",), name
        with pytest.raises(psycopg.OperationalError):
            connect(port, "app", "wrong", "app")
        with pytest.raises(psycopg.OperationalError):
            connect(port, "app", "app-pw", "nosuchdb")


def test_show_commands_answer_with_pgbouncers_columns(pair: dict[str, int]) -> None:
    with (
        connect(pair["fleetpool"], "app", "app-pw", "app") as a,
        connect(pair["pgbouncer"], "app", "app-pw", "app") as b,
    ):
        for conn in (a, b):
            for _ in range(4):
                conn.execute("SELECT 1")
        consoles = {
            name: connect(port, "admin", "admin-pw", "pgbouncer") for name, port in pair.items()
        }
        try:
            for command in COMMANDS:
                ours = _columns(consoles["fleetpool"], command)
                theirs = _columns(consoles["pgbouncer"], command)
                shared = [c for c in ours if c in theirs]
                assert shared, command
                assert ours[: len(shared)] == shared, (command, ours)  # PgBouncer's first
                assert shared == [c for c in theirs if c in shared], (command, theirs)
            for name, console in consoles.items():
                stats = _rows(console, "SHOW STATS")
                app = next(r for r in stats if r["database"] == "app")
                assert int(app["total_xact_count"]) >= 4, name
                pools = _rows(console, "SHOW POOLS")
                assert any(p["database"] == "app" and p["user"] == "app" for p in pools), name
            ours_cfg = {r["key"]: r["value"] for r in _rows(consoles["fleetpool"], "SHOW CONFIG")}
            theirs_cfg = {r["key"]: r["value"] for r in _rows(consoles["pgbouncer"], "SHOW CONFIG")}
            for key in ("pool_mode", "max_client_conn", "auth_type", "admin_users"):
                assert ours_cfg[key] == theirs_cfg[key], key
            lists = {r["list"] for r in _rows(consoles["fleetpool"], "SHOW LISTS")}
            assert lists <= {r["list"] for r in _rows(consoles["pgbouncer"], "SHOW LISTS")}
            totals = {r["name"] for r in _rows(consoles["fleetpool"], "SHOW TOTALS")}
            assert {"total_xact_count", "total_xact_time", "total_wait_time"} <= totals
        finally:
            for console in consoles.values():
                console.close()


def _columns(conn: psycopg.Connection[Any], command: str) -> list[str]:
    cur = conn.execute(f"SHOW {command}")
    cur.fetchall()
    return [d.name for d in cur.description or []]


def _rows(conn: psycopg.Connection[Any], sql: str) -> list[dict[str, Any]]:
    cur = conn.execute(sql)
    names = [d.name for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
