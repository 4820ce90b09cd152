"""zombie-killer: a warm global connection plus serverless-mysql / serverless-pg style clean-up.

At the end of every invocation the container counts the sessions of its user
(filtered by this strategy's application_name prefix on PostgreSQL, as
serverless-pg v2 does) against the server's limit; above 80% it terminates the
user's sessions that have been idle longer than ``FLEET_ZOMBIE_MIN_IDLE`` seconds
(never its own). The connection is opened lazily in the handler, reconnected
when lost, and a refused connect is retried three times with jittered backoff
(serverless-pg's defaults: base 2 ms, cap 1 s).
"""

from __future__ import annotations

import random
import time
from typing import Any

from ..runtime import classify
from ._workload import Settings, connect, env_float, is_closed, session_id, work

SETTINGS = Settings.from_env()
UTILIZATION = env_float("FLEET_ZOMBIE_UTILIZATION", 0.8)
MIN_IDLE = env_float("FLEET_ZOMBIE_MIN_IDLE", 2.0)
RETRIES = 3
PREFIX = SETTINGS.app_name.rsplit(":", 1)[0] + ":"

CONN: Any = None
MAX_CONNECTIONS: int | None = None


def _connect() -> Any:
    for attempt in range(RETRIES + 1):
        try:
            return connect(SETTINGS)
        except Exception as exc:
            if attempt == RETRIES or classify(exc) != "too_many_connections":
                raise
            time.sleep(min(1.0, random.uniform(0.002, 3.0)))
    raise AssertionError("unreachable")


def _query(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []
    finally:
        cur.close()


def _max_connections(conn: Any) -> int:
    global MAX_CONNECTIONS
    if MAX_CONNECTIONS is None:
        if SETTINGS.engine == "postgresql":
            rows = _query(
                conn,
                "SELECT current_setting('max_connections')::int"
                " - current_setting('superuser_reserved_connections')::int",
            )
        else:
            rows = _query(conn, "SELECT @@max_connections")
        MAX_CONNECTIONS = int(rows[0][0])
    return MAX_CONNECTIONS


def clean(conn: Any) -> int:
    """Kill idle sessions of our user when usage is above the threshold; return kills."""
    limit = _max_connections(conn)
    if SETTINGS.engine == "postgresql":
        used = int(
            _query(
                conn,
                "SELECT count(*) FROM pg_stat_activity WHERE usename = current_user"
                " AND application_name LIKE %s",
                (PREFIX + "%",),
            )[0][0]
        )
        if used <= limit * UTILIZATION:
            return 0
        rows = _query(
            conn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE usename = current_user AND application_name LIKE %s"
            " AND state = 'idle' AND pid <> pg_backend_pid()"
            " AND now() - state_change > make_interval(secs => %s)",
            (PREFIX + "%", MIN_IDLE),
        )
        return sum(1 for r in rows if r[0])
    used = int(
        _query(
            conn,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
            " WHERE USER = SUBSTRING_INDEX(CURRENT_USER(), '@', 1)",
        )[0][0]
    )
    if used <= limit * UTILIZATION:
        return 0
    ids = _query(
        conn,
        "SELECT ID FROM information_schema.PROCESSLIST"
        " WHERE USER = SUBSTRING_INDEX(CURRENT_USER(), '@', 1)"
        " AND COMMAND = 'Sleep' AND TIME >= %s AND ID <> CONNECTION_ID()",
        (MIN_IDLE,),
    )
    killed = 0
    for (thread_id,) in ids:
        try:
            _query(conn, f"KILL {int(thread_id)}")
            killed += 1
        except Exception:
            pass  # already gone (ER_NO_SUCH_THREAD): another container got it first
    return killed


def handler(event: Any, context: Any) -> dict[str, Any]:
    global CONN
    if CONN is None or is_closed(CONN):
        CONN = _connect()
    try:
        result = work(CONN, event)
    except Exception as exc:
        if classify(exc) != "connection_lost":
            raise
        CONN = _connect()  # our idle session was killed by another container: retry once
        result = work(CONN, event)
    try:
        result["killed"] = clean(CONN)
    except Exception as exc:  # clean-up errors are logged and swallowed, as upstream does
        result["clean_error"] = str(exc)[:200]
    result["session"] = session_id(CONN)
    return result
