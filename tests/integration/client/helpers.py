"""Helpers shared by the client's integration tests (imported by module name)."""

from __future__ import annotations

from typing import Any


def rows(conn: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on a driver connection (psycopg or PyMySQL) and return its rows."""
    if hasattr(conn, "pgconn"):
        cur = conn.execute(sql, params)
        return [tuple(r) for r in cur.fetchall()] if cur.description else []
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return [tuple(r) for r in cur.fetchall()] if cur.description else []


def one(conn: Any, sql: str, params: Any = None) -> Any:
    return rows(conn, sql, params)[0][0]


def admin(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run SQL on a fresh, plain driver connection (the test's own view of the server)."""
    if dsn.startswith("postgres"):
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as c:
            return rows(c, sql, params)
    import pymysql

    from fleetpool.client.dsn import parse_dsn

    t = parse_dsn(dsn)
    c = pymysql.connect(
        host=t.host,
        port=t.port,
        user=t.user,
        password=t.password or "",
        database=t.database,
        autocommit=True,
    )
    try:
        return rows(c, sql, params)
    finally:
        c.close()
