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
# Commands: SHOW POOLS|CLIENTS|SERVERS|STATS|CONFIG|VERSION|WORKERS, PAUSE (waits until
# no transaction runs), RESUME, RECONNECT (retire every server connection), WAIT_CLOSE
# (wait until retired connections are closed), RELOAD. PgBouncer's column names are
# used where they overlap, so existing scripts keep working.
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..errors import FleetpoolError

VERSION = "fleetpool proxy 0.2"


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

    def config(self) -> dict[str, Any]: ...


class Control(Protocol):
    def pause(self) -> Awaitable[bool]: ...

    def resume(self) -> Awaitable[None]: ...

    def reconnect(self) -> Awaitable[None]: ...

    def wait_close(self) -> Awaitable[bool]: ...

    def reload(self) -> Awaitable[str]: ...


_HINT = (
    "try SHOW POOLS|CLIENTS|SERVERS|STATS|CONFIG|WORKERS|VERSION, PAUSE, RESUME, "
    "RECONNECT, WAIT_CLOSE, RELOAD"
)


def _table(items: list[dict[str, Any]], columns: list[str]) -> Table:
    return Table(columns, [[item.get(c) for c in columns] for item in items])


class Console:
    def __init__(self, inspect: Inspect, control: Control) -> None:
        self.inspect = inspect
        self.control = control

    async def execute(self, sql: str, role: Role = "admin") -> list[Answer]:
        """Answer every ``;``-separated command of ``sql`` for a user of ``role``."""
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
                answers.append(await self._statement(stmt))
            except FleetpoolError as exc:
                answers.append(Failed(str(exc)))
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
        return Failed(f"unknown admin command: {stmt[:80]}", _HINT)

    def _show_pools(self) -> Answer:
        cols = [
            "database",
            "user",
            "worker",
            "cl_active",
            "cl_waiting",
            "cl_pinned",
            "sv_active",
            "sv_idle",
            "sv_login",
            "maxwait",
            "pool_mode",
            "pool_size",
            "paused",
        ]
        return _table(self.inspect.pools(), cols)

    def _show_clients(self) -> Answer:
        cols = [
            "id",
            "worker",
            "user",
            "database",
            "addr",
            "state",
            "pinned",
            "pin_reason",
            "application_name",
            "connect_time",
        ]
        return _table(self.inspect.clients(), cols)

    def _show_servers(self) -> Answer:
        cols = [
            "id",
            "worker",
            "database",
            "user",
            "addr",
            "pid",
            "state",
            "client",
            "age",
            "prepared",
            "queries",
        ]
        return _table(self.inspect.servers(), cols)

    def _show_workers(self) -> Answer:
        cols = ["worker", "pid", "clients", "servers", "pinned", "transactions", "updated_ago"]
        return _table(self.inspect.workers(), cols)

    def _show_stats(self) -> Answer:
        snap = self.inspect.snapshot()
        rows = [
            [k, v]
            for k, v in snap.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        rows += [
            [f"pins_by_reason:{k}", v] for k, v in sorted(snap.get("pins_by_reason", {}).items())
        ]
        return Table(["stat", "value"], rows)

    def _show_config(self) -> Answer:
        return Table(["key", "value"], [[k, v] for k, v in sorted(self.inspect.config().items())])

    def _show_version(self) -> Answer:
        return Table(["version"], [[VERSION]])
