"""The workload every strategy runs, and its settings from the container's environment.

Strategy: the strategies differ only in how they get a connection, so the
query-plus-think-time workload, the DSN parsing and the connect call live here
once. Settings come from environment variables the emulator sets per container
(as a platform sets a function's configuration):

``FLEET_DSN`` (``postgresql://`` or ``mysql://``, parsed by the client's parser), ``FLEET_APP_NAME``
(``fleet:<strategy>:<container>``), ``FLEET_CONNECT_TIMEOUT``, ``FLEET_THINK``,
``FLEET_LIMIT`` (the fleet's connection limit), ``FLEET_BUDGET_URL``,
``FLEET_BUDGET_NAME``, ``FLEET_LEASE_TTL``, ``FLEET_MAX_WAIT``, ``FLEET_COUNTER_PATH``,
``FLEET_ZOMBIE_MIN_IDLE``, ``FLEET_POOL_SIZE``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from ...client.dsn import Engine, parse_dsn
from ..runtime import note_connect


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    dsn: str
    engine: Engine
    app_name: str
    connect_timeout: float

    @classmethod
    def from_env(cls) -> Settings:
        dsn = os.environ.get("FLEET_DSN", "")
        if not dsn:
            raise RuntimeError("FLEET_DSN is not set")
        return cls(
            dsn,
            engine_of(dsn),
            os.environ.get("FLEET_APP_NAME", "fleet"),
            env_float("FLEET_CONNECT_TIMEOUT", 5.0),
        )


def engine_of(dsn: str) -> Engine:
    """``postgresql`` or ``mysql``, as the client's DSN parser names them."""
    return parse_dsn(dsn).engine


def mysql_params(dsn: str) -> dict[str, Any]:
    """PyMySQL ``connect()`` keyword arguments for a ``mysql://`` URL (the client's parser)."""
    t = parse_dsn(dsn)
    params: dict[str, Any] = {
        "host": t.host or "127.0.0.1",
        "port": t.port,
        "user": t.user or "root",
        "password": t.password or "",
        "autocommit": True,
    }
    if t.database:
        params["database"] = t.database
    if "unix_socket" in t.params:
        params["unix_socket"] = t.params["unix_socket"]
    return params


def connect(settings: Settings | None = None) -> Any:
    """Open one connection (autocommit) and tell the emulator about it."""
    s = settings or Settings.from_env()
    timeout = max(1, round(s.connect_timeout))
    if s.engine == "postgresql":
        import psycopg

        conn: Any = psycopg.connect(
            s.dsn, autocommit=True, connect_timeout=timeout, application_name=s.app_name
        )
        note_connect(conn.info.backend_pid)
        return conn
    import pymysql

    conn = pymysql.connect(
        connect_timeout=timeout, program_name=s.app_name[:32], **mysql_params(s.dsn)
    )
    note_connect(conn.thread_id())
    return conn


def session_id(conn: Any) -> int | None:
    info = getattr(conn, "info", None)
    if info is not None and hasattr(info, "backend_pid"):
        return int(info.backend_pid)
    if hasattr(conn, "thread_id"):
        return int(conn.thread_id())
    return None


def is_closed(conn: Any) -> bool:
    closed = getattr(conn, "closed", None)
    if isinstance(closed, bool):
        return closed or bool(getattr(conn, "broken", False))
    return not getattr(conn, "open", True)


def work(conn: Any, event: Any) -> dict[str, Any]:
    """The workload: one query, then the think time (the connection stays held)."""
    event = event if isinstance(event, dict) else {}
    query = str(event.get("query") or "SELECT 1")
    think = float(event.get("think", env_float("FLEET_THINK", 0.2)))
    cur = conn.cursor()
    try:
        cur.execute(query)
        rows = cur.fetchall() if cur.description else []
    finally:
        cur.close()
    if think > 0:
        time.sleep(think)
    return {"rows": len(rows), "session": session_id(conn)}


def close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:
        pass
