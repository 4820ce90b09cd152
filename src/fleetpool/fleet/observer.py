"""The observer: samples the database's own view of the fleet every 250 ms.

Strategy: trust the server, not the clients. Each sample reads the sessions
from ``pg_stat_activity`` or ``information_schema.PROCESSLIST`` over one
long-lived connection (on the embedded server a superuser, so it can still look
when the workload has exhausted its slots), attributes them to containers by
``application_name`` (``fleet:<strategy>:<container>``) or by the server session
ids containers reported, and joins them with the containers' states, the budget
snapshot and the counter. A session whose container is dead, or frozen past the
lease TTL, is a zombie. The observer's own session is never counted.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..engines.postgres import USABLE_CONNECTIONS
from .emulator import ContainerView
from .scheduler import State, is_zombie
from .strategies._workload import engine_of, mysql_params


@dataclass(frozen=True)
class Session:
    id: int
    app: str
    state: str  # "active", "idle", "idle in transaction", ...
    user: str


def connect_observer(dsn: str) -> Any:
    if engine_of(dsn) == "postgresql":
        import psycopg

        return psycopg.connect(
            dsn, autocommit=True, connect_timeout=5, application_name="fleetpool-observer"
        )
    import pymysql

    return pymysql.connect(connect_timeout=5, **mysql_params(dsn))


def server_limit(conn: Any, engine: str) -> int:
    """Connections the workload can open: max_connections minus the superuser reserve."""
    cur = conn.cursor()
    try:
        if engine == "postgresql":
            cur.execute(f"SELECT {USABLE_CONNECTIONS}")
        else:
            cur.execute("SELECT @@max_connections")
        row = cur.fetchone()
    finally:
        cur.close()
    return int(row[0]) if row else 0


def read_sessions(conn: Any, engine: str) -> list[Session]:
    cur = conn.cursor()
    try:
        if engine == "postgresql":
            cur.execute(
                "SELECT pid, coalesce(application_name, ''), coalesce(state, ''),"
                " coalesce(usename, '') FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            return [Session(int(r[0]), r[1], r[2], r[3]) for r in cur.fetchall()]
        cur.execute(
            "SELECT ID, USER, COMMAND FROM information_schema.PROCESSLIST"
            " WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Daemon', 'Binlog Dump')"
            " AND USER NOT IN ('system user', 'event_scheduler')"
        )
        out = []
        for r in cur.fetchall():
            cmd = str(r[2])
            state = "idle" if cmd == "Sleep" else "active"
            out.append(Session(int(r[0]), "", state, str(r[1])))
        return out
    finally:
        cur.close()


def attribute(
    sessions: list[Session], containers: dict[str, ContainerView], app_prefix: str
) -> dict[int, str]:
    """Map server session id -> container id (by application_name, then reported ids)."""
    by_reported: dict[int, str] = {}
    for cid, view in containers.items():
        for sid in view.sessions:
            with contextlib.suppress(TypeError, ValueError):
                by_reported[int(sid)] = cid
    out: dict[int, str] = {}
    head = app_prefix + ":"
    for s in sessions:
        if s.app.startswith(head):
            out[s.id] = s.app[len(head) :]
        elif s.id in by_reported:
            out[s.id] = by_reported[s.id]
    return out


def sample(
    t: float,
    sessions: list[Session],
    containers: dict[str, ContainerView],
    *,
    app_prefix: str,
    limit: int,
    zombie_after: float,
    now: float,
) -> dict[str, Any]:
    """One observation (pure): server view, container states and zombies at ``now``."""
    owner = attribute(sessions, containers, app_prefix)
    by_state: dict[str, int] = {}
    owners = {"running": 0, "frozen": 0, "zombie": 0, "other": 0}
    for s in sessions:
        by_state[s.state or "unknown"] = by_state.get(s.state or "unknown", 0) + 1
        cid = owner.get(s.id)
        view = containers.get(cid) if cid is not None else None
        if view is None:
            owners["other"] += 1
        elif not s.state.startswith("active") and is_zombie(
            view.state, now - view.since, zombie_after
        ):
            owners["zombie"] += 1
        elif view.state is State.FROZEN or view.state is State.DEAD:
            owners["frozen"] += 1
        else:
            owners["running"] += 1
    zombies = owners["zombie"]
    counts = {st.value: 0 for st in State}
    for view in containers.values():
        counts[view.state.value] += 1
    total = len(sessions)
    return {
        "t": round(t, 3),
        "server": {
            "total": total,
            "fleet": len(owner),
            "other": total - len(owner),
            "by_state": by_state,
            "owners": owners,
        },
        "remaining": limit - total,
        "zombies": zombies,
        "containers": counts,
    }


class Observer:
    """Samples in a background thread until stopped."""

    def __init__(
        self,
        dsn: str,
        *,
        app_prefix: str,
        containers: Callable[[], dict[str, ContainerView]],
        clock: Callable[[], float],
        zombie_after: float,
        limit: int | None = None,
        extras: Callable[[], dict[str, Any]] | None = None,
        interval: float = 0.25,
    ) -> None:
        self.dsn = dsn
        self.engine = engine_of(dsn)
        self.conn = connect_observer(dsn)
        self.limit = limit if limit is not None else server_limit(self.conn, self.engine)
        self.app_prefix = app_prefix
        self._containers = containers
        self._clock = clock
        self.zombie_after = zombie_after
        self._extras = extras
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="fleet-observer")

    def start(self) -> Observer:
        self._thread.start()
        return self

    def observe(self) -> dict[str, Any]:
        sessions = read_sessions(self.conn, self.engine)
        now = self._clock()
        row = sample(
            now,
            sessions,
            self._containers(),
            app_prefix=self.app_prefix,
            limit=self.limit,
            zombie_after=self.zombie_after,
            now=now,
        )
        if self._extras is not None:
            with contextlib.suppress(Exception):
                row.update(self._extras())
        return row

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.samples.append(self.observe())
            except Exception:
                self.errors += 1
                with contextlib.suppress(Exception):
                    self.conn.close()
                with contextlib.suppress(Exception):
                    self.conn = connect_observer(self.dsn)
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(5)
        return self.samples

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(Exception):
            self.conn.close()
