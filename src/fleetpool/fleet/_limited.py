"""The demo's limited database user.

``limited_user``: ``fleetpool demo --dsn ... --limit N`` against a server with
far more than N connections would show nothing (the naive strategies never meet
a limit). So the demo creates a user of its own with that connection limit --
a PostgreSQL role with ``CONNECTION LIMIT N`` (a member of the DSN's user, so
it reaches the same tables), or a MySQL/MariaDB user with
``MAX_USER_CONNECTIONS N`` and the DSN's database granted -- runs the fleet
as that user, and drops it at the end (its sessions ended first).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from ..client.dsn import Engine
from ..errors import ConfigError
from ..redact import redact_url
from .observer import connect_observer


def _with_user(dsn: str, user: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user)}:{quote(password)}@{host}"))


def _run(conn: Any, sql: str) -> None:
    cur = conn.cursor()
    try:
        cur.execute(sql)
    finally:
        cur.close()


@contextlib.contextmanager
def limited_user(dsn: str, engine: Engine, limit: int) -> Iterator[str]:
    """A DSN for a new user allowed ``limit`` connections; the user is dropped after."""
    user = f"fleetpool_demo_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    parts = urlsplit(dsn)
    owner = unquote(parts.username or "")
    conn = connect_observer(dsn)
    try:
        if engine == "postgresql":
            _run(
                conn,
                f"CREATE ROLE {user} LOGIN PASSWORD '{password}' CONNECTION LIMIT {int(limit)}",
            )
            if owner:
                _run(conn, f'GRANT "{owner.replace(chr(34), "")}" TO {user}')
        else:
            database = parts.path.lstrip("/") or None
            _run(
                conn,
                f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}' "
                f"WITH MAX_USER_CONNECTIONS {int(limit)}",
            )
            if database:
                _run(conn, f"GRANT ALL ON `{database.replace('`', '')}`.* TO '{user}'@'%'")
    except Exception as exc:
        _drop(conn, engine, user)
        raise ConfigError(
            f"--limit {limit} against {redact_url(dsn)} needs a user with that connection "
            f"limit, and creating one failed ({type(exc).__name__}: {exc}); the DSN's user "
            "needs CREATEROLE (PostgreSQL) or CREATE USER and GRANT OPTION (MySQL)"
        ) from exc
    finally:
        conn.close()  # no session of the demo's own while the fleet runs
    try:
        yield _with_user(dsn, user, password)
    finally:
        with contextlib.suppress(Exception):
            conn = connect_observer(dsn)
            try:
                _drop(conn, engine, user)
            finally:
                conn.close()


def _drop(conn: Any, engine: Engine, user: str) -> None:
    with contextlib.suppress(Exception):
        if engine == "postgresql":
            _run(
                conn,
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{user}'",
            )
            with contextlib.suppress(Exception):  # objects the fleet made, if any
                _run(conn, f"REASSIGN OWNED BY {user} TO CURRENT_USER")
                _run(conn, f"DROP OWNED BY {user}")
            _run(conn, f"DROP ROLE IF EXISTS {user}")
        else:
            cur = conn.cursor()
            try:
                cur.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (user,)
                )
                for (pid,) in cur.fetchall():
                    with contextlib.suppress(Exception):
                        cur.execute(f"KILL {int(pid)}")
            finally:
                cur.close()
            _run(conn, f"DROP USER IF EXISTS '{user}'@'%'")


__all__ = ["limited_user"]
