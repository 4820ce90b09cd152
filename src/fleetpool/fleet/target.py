"""The database a fleet run targets: the user's, or an embedded PostgreSQL started for it.

Strategy: the run only needs a workload DSN, an observer DSN, the engine and the
usable limit, so provisioning (and tidying the server between strategies) lives
here, apart from running strategies. Engine names are the client's
(``postgresql``/``mysql``, :mod:`fleetpool.client.dsn`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..client.dsn import Engine
from ._limited import limited_user
from .embedded import EmbeddedPostgres
from .observer import connect_observer, read_sessions, server_limit
from .scenario import Scenario
from .strategies._workload import engine_of


@dataclass
class Target:
    """The database under test."""

    dsn: str  # the workload's
    admin_dsn: str  # the observer's
    engine: Engine
    limit: int
    embedded: bool
    version: str = ""
    #: Set when ``dsn`` is a demo user the server limits to ``limit`` connections: the
    #: DSN the proxy strategies use instead (their pool is the limit).
    upstream_dsn: str | None = None


@contextlib.contextmanager
def open_target(scenario: Scenario) -> Iterator[Target]:
    """The scenario's database, or an embedded PostgreSQL started for the run."""
    if scenario.dsn:
        engine = engine_of(scenario.dsn)
        conn = connect_observer(scenario.dsn)
        try:
            limit = server_limit(conn, engine) - 1  # the observer holds one slot
            version = _version(conn, engine)
        finally:
            conn.close()
        if scenario.limit is not None:
            # The server must enforce --limit too, or the naive strategies never meet it.
            with limited_user(scenario.dsn, engine, scenario.limit) as fleet_dsn:
                yield Target(
                    fleet_dsn, scenario.dsn, engine, scenario.limit, False, version, scenario.dsn
                )
            return
        yield Target(scenario.dsn, scenario.dsn, engine, limit, False, version)
        return
    with EmbeddedPostgres(max_connections=scenario.max_connections) as pg:
        conn = connect_observer(pg.admin_dsn)
        try:
            version = _version(conn, "postgresql")
        finally:
            conn.close()
        yield Target(pg.dsn, pg.admin_dsn, "postgresql", scenario.max_connections, True, version)


def _version(conn: Any, engine: Engine) -> str:
    cur = conn.cursor()
    try:
        cur.execute("SELECT version()")
        row = cur.fetchone()
    finally:
        cur.close()
    return str(row[0]).split(" on ")[0].split(",")[0] if row else ""


def with_app_name(dsn: str, app: str) -> str:
    """The DSN with ``application_name`` set (PostgreSQL only; MySQL has no such field)."""
    if engine_of(dsn) != "postgresql":
        return dsn
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "application_name"]
    query.append(("application_name", app))
    return urlunsplit(parts._replace(query=urlencode(query)))


def cleanup(target: Target, app_prefix: str, sessions: set[int], timeout: float = 10.0) -> None:
    """End any session the strategy left behind and wait until the server shows none."""
    conn = connect_observer(target.admin_dsn)
    try:
        deadline = time.monotonic() + timeout
        while True:
            left = [
                s
                for s in read_sessions(conn, target.engine)
                if s.app.startswith(app_prefix + ":") or s.id in sessions
            ]
            if not left or time.monotonic() > deadline:
                return
            cur = conn.cursor()
            try:
                for s in left:
                    with contextlib.suppress(Exception):
                        if target.engine == "postgresql":
                            cur.execute("SELECT pg_terminate_backend(%s)", (s.id,))
                        else:
                            cur.execute(f"KILL {int(s.id)}")
            finally:
                cur.close()
            time.sleep(0.2)
    finally:
        conn.close()
