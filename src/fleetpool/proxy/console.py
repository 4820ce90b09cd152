# Strategy: the admin console's commands, engine-neutral. A client of the virtual admin
# database sends PgBouncer-style commands; ``Console.execute`` answers each with plain
# tables or a command tag, and the wire-protocol plug-in encodes them (PostgreSQL
# RowDescription/DataRow, MySQL result sets). What it shows comes from ``Inspect``
# (the numbers of this worker, merged with its siblings'); what it does goes through
# ``Control`` (the worker broadcasts PAUSE, RESUME, RECONNECT, RELOAD to every worker).
#
# Who may do what is decided here too, for every engine: ``console_role`` gives a user's
# role (admin_users: everything; stats_users: SHOW only; anyone else: none, and the
# plug-in then refuses the login exactly as it refuses an unknown database, so the
# console's existence is not even confirmed).
#
# Commands: SHOW POOLS|CLIENTS|SERVERS|DATABASES|STATS|STATS_TOTALS|TOTALS|LISTS|USERS|
# CONFIG|VERSION|WORKERS|HELP, PAUSE (waits until no transaction runs), RESUME,
# RECONNECT (retire every server connection), WAIT_CLOSE (wait until retired connections
# are closed), RELOAD. The SHOW commands PgBouncer has answer with PgBouncer's columns,
# in PgBouncer's order, for every column fleetpool can fill truthfully (times in
# PgBouncer's units: seconds plus microseconds, totals in microseconds), then
# fleetpool's own columns; so scripts and exporters written for PgBouncer keep working.
# Columns PgBouncer has and fleetpool cannot know (bytes sent, cancel requests) are left
# out rather than filled with zeros.
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .. import __version__
from ..errors import FleetpoolError
from . import events
from .pgbouncer import config_rows

VERSION = f"fleetpool proxy {__version__}"


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[Any]]
    tag: str = "SHOW"


@dataclass(frozen=True)
class Done:
    tag: str


@dataclass(frozen=True)
class Failed:
    message: str
    hint: str = ""
    denied: bool = False  # the user's role does not allow the command


Role = Literal["admin", "stats"]


def console_role(user: str, admin_users: Sequence[str], stats_users: Sequence[str]) -> Role | None:
    """What ``user`` may do in the admin console: everything, SHOW only, or nothing."""
    if user in admin_users:
        return "admin"
    if user in stats_users:
        return "stats"
    return None


Answer = Table | Done | Failed


class Inspect(Protocol):
    def snapshot(self) -> dict[str, Any]: ...

    def clients(self) -> list[dict[str, Any]]: ...

    def pools(self) -> list[dict[str, Any]]: ...

    def servers(self) -> list[dict[str, Any]]: ...

    def workers(self) -> list[dict[str, Any]]: ...

    def databases(self) -> list[dict[str, Any]]: ...

    def users(self) -> list[dict[str, Any]]: ...

    def config(self) -> dict[str, Any]: ...


class Control(Protocol):
    def pause(self) -> Awaitable[bool]: ...

    def resume(self) -> Awaitable[None]: ...

    def reconnect(self) -> Awaitable[None]: ...

    def wait_close(self) -> Awaitable[bool]: ...

    def reload(self) -> Awaitable[str]: ...


#: Columns of each SHOW command: PgBouncer's (where fleetpool knows them), then its own.
COLUMNS: dict[str, list[str]] = {
    "pools": [
        "database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used",
        "sv_login", "maxwait", "maxwait_us", "pool_mode",
        "worker", "cl_pinned", "pool_size", "paused",
    ],
    "clients": [
        "type", "user", "database", "state", "addr", "port", "connect_time", "wait",
        "wait_us", "application_name",
        "id", "worker", "pinned", "pin_reason",
    ],
    "servers": [
        "type", "user", "database", "state", "addr", "port", "connect_time", "remote_pid",
        "id", "worker", "client", "age", "prepared", "queries",
    ],
    "databases": [
        "name", "host", "port", "database", "force_user", "pool_size", "pool_mode",
        "current_connections", "paused", "disabled",
    ],
    "stats": ["database", "total_xact_count", "total_xact_time", "total_wait_time"],
    "stats_totals": ["database", "xact_count", "xact_time", "wait_time"],
    "users": ["name", "pool_mode"],
    "workers": ["worker", "pid", "clients", "servers", "pinned", "transactions", "updated_ago"],
}  # fmt: skip

_COMMANDS = (
    "SHOW POOLS|CLIENTS|SERVERS|DATABASES|STATS|STATS_TOTALS|TOTALS|LISTS|USERS|CONFIG|"
    "WORKERS|VERSION|HELP, PAUSE, RESUME, RECONNECT, WAIT_CLOSE, RELOAD"
)
_HINT = f"try {_COMMANDS}"


def _table(items: list[dict[str, Any]], columns: list[str]) -> Table:
    return Table(columns, [[item.get(c) for c in columns] for item in items])


class Console:
    def __init__(self, inspect: Inspect, control: Control) -> None:
        self.inspect = inspect
        self.control = control

    async def execute(
        self, sql: str, *, role: Role = "admin", user: str = "", addr: str = ""
    ) -> list[Answer]:
        """Answer every ``;``-separated command of ``sql`` for ``user`` (of ``role``),
        each one logged as an event."""
        answers: list[Answer] = []
        for stmt in [s.strip() for s in sql.split(";") if s.strip()]:
            if role != "admin" and stmt.split(None, 1)[0].upper() != "SHOW":
                answers.append(
                    Failed(
                        f"permission denied: {stmt.split(None, 1)[0][:40].upper()} needs "
                        "an admin user (admin_users); stats_users may run SHOW commands",
                        denied=True,
                    )
                )
                continue
            try:
                answer = await self._statement(stmt)
            except FleetpoolError as exc:
                answer = Failed(str(exc))
            result = f"error: {answer.message}" if isinstance(answer, Failed) else "ok"
            events.admin_command(user, addr, " ".join(stmt.split())[:200], result)
            answers.append(answer)
        return answers

    async def _statement(self, stmt: str) -> Answer:
        words = stmt.upper().split()
        if words[:1] == ["SHOW"] and len(words) == 2:
            show: Callable[[], Answer] | None = getattr(self, f"_show_{words[1].lower()}", None)
            if show is not None:
                return show()
        control = self.control
        if words == ["PAUSE"]:
            ok = await control.pause()
            return Done("PAUSE") if ok else Failed("PAUSE timed out waiting for transactions")
        if words == ["RESUME"]:
            await control.resume()
            return Done("RESUME")
        if words == ["RECONNECT"]:
            await control.reconnect()
            return Done("RECONNECT")
        if words == ["WAIT_CLOSE"]:
            ok = await control.wait_close()
            return Done("WAIT_CLOSE") if ok else Failed("WAIT_CLOSE timed out")
        if words == ["RELOAD"]:
            try:
                return Done(await control.reload())
            except FleetpoolError as exc:
                return Failed(f"RELOAD failed: {exc}")
        if words[:1] in (["PAUSE"], ["RESUME"], ["RECONNECT"], ["WAIT_CLOSE"]):
            return Failed(f"{words[0]} acts on every database; it takes no name", _HINT)
        return Failed(f"unknown admin command: {stmt[:80]}", _HINT)

    def _show_pools(self) -> Answer:
        return _table(self.inspect.pools(), COLUMNS["pools"])

    def _show_clients(self) -> Answer:
        return _table(self.inspect.clients(), COLUMNS["clients"])

    def _show_servers(self) -> Answer:
        return _table(self.inspect.servers(), COLUMNS["servers"])

    def _show_databases(self) -> Answer:
        return _table(self.inspect.databases(), COLUMNS["databases"])

    def _show_workers(self) -> Answer:
        return _table(self.inspect.workers(), COLUMNS["workers"])

    def _show_users(self) -> Answer:
        return _table(self.inspect.users(), COLUMNS["users"])

    def _per_database(self) -> list[dict[str, Any]]:
        totals: dict[str, dict[str, int]] = {}
        for pool in self.inspect.pools():
            row = totals.setdefault(
                str(pool["database"]), {"xact_count": 0, "xact_time": 0, "wait_time": 0}
            )
            row["xact_count"] += int(pool.get("xact_count") or 0)
            row["xact_time"] += int(pool.get("xact_time_us") or 0)
            row["wait_time"] += int(pool.get("wait_time_us") or 0)
        return [{"database": name, **row} for name, row in sorted(totals.items())]

    def _show_stats(self) -> Answer:
        rows = [
            {f"total_{k}" if k != "database" else k: v for k, v in row.items()}
            for row in self._per_database()
        ]
        return _table(rows, COLUMNS["stats"])

    def _show_stats_totals(self) -> Answer:
        return _table(self._per_database(), COLUMNS["stats_totals"])

    def _show_totals(self) -> Answer:
        per_db = self._per_database()
        rows: list[list[Any]] = [
            [f"total_{k}", sum(r[k] for r in per_db)]
            for k in ("xact_count", "xact_time", "wait_time")
        ]
        snap = self.inspect.snapshot()
        rows += [
            [k, v]
            for k, v in snap.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        rows += [
            [f"pins_by_reason:{k}", v] for k, v in sorted(snap.get("pins_by_reason", {}).items())
        ]
        return Table(["name", "value"], rows)

    def _show_lists(self) -> Answer:
        snap = self.inspect.snapshot()
        clients = self.inspect.clients()
        rows = [
            ["databases", len(self.inspect.databases())],
            ["users", len(self.inspect.users())],
            ["pools", len(self.inspect.pools())],
            ["used_clients", sum(1 for c in clients if c.get("state") in _LOGGED_IN)],
            ["login_clients", sum(1 for c in clients if c.get("state") not in _LOGGED_IN)],
            ["used_servers", int(snap.get("database_connections", 0))],
        ]
        return Table(["list", "items"], rows)

    def _show_config(self) -> Answer:
        rows = config_rows(self.inspect.config())
        return Table(["key", "value", "default", "changeable"], rows)

    def _show_version(self) -> Answer:
        return Table(["version"], [[VERSION]])

    def _show_help(self) -> Answer:
        return Table(["command"], [[c.strip()] for c in _COMMANDS.split(",")])


_LOGGED_IN = ("active", "waiting", "idle")
