"""The asyncmy adapter for :class:`~fleetpool.AsyncDatabase` (MySQL and MariaDB).

Strategy: asyncmy was chosen over aiomysql by measurement
(``python -m benchmarks.async_mysql``: the same connect time, a warm ``SELECT 1``
about 1.5x faster, result decoding several times faster). As with PyMySQL,
every cursor sends its SQL through ``Connection.query``, so one override in a
subclass sees all statements; the transaction and autocommit bits come with
every OK packet (``server_status``), read from memory at check-in.

Liveness: asyncmy's protocol reads the socket whenever the event loop runs, so
a server's goodbye may already sit in its buffer (or have closed the stream)
rather than on the socket: the check looks at both. Reset is
``COM_RESET_CONNECTION`` followed by the statement restoring the character set
and the timeouts, as in the blocking adapter.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncmy  # type: ignore[import-untyped]
import asyncmy.connection  # type: ignore[import-untyped]
import asyncmy.cursors  # type: ignore[import-untyped]
import asyncmy.errors  # type: ignore[import-untyped]

from ..engines import SessionState
from ..engines import mysql as my
from ._driver import AsyncDriver
from ._mysql import (
    _AUTOCOMMIT,
    _CLEAN_MASK,
    _IN_TRANS,
    _NONE,
    MySQLBase,
    _classify,
    after_reset_sql,
    bearer_ssl,
    ssl_options,
)
from .credentials import Login
from .decisions import SessionReport

_base_query: Any = asyncmy.connection.Connection.query


class AsyncFleetMySQLConnection(asyncmy.connection.Connection):  # type: ignore[misc]
    """``asyncmy.Connection`` that remembers what session state it may hold."""

    _fp_state: SessionState = SessionState.NONE
    _fp_init: str | None = None
    _fp_cursor_cls: Any = None
    _fp_ready: bool = False
    _fp_status: int = 0

    async def query(self, sql: Any, unbuffered: bool = False) -> Any:
        state = _classify(sql)
        if state:
            self._fp_state |= state
        return await _base_query(self, sql, unbuffered)

    async def select_db(self, db: str) -> None:
        self._fp_state |= SessionState.DATABASE
        await super().select_db(db)  # type: ignore[no-untyped-call]

    async def set_charset(self, charset: str) -> None:
        if self._fp_ready and charset != self.character_set_name():  # type: ignore[no-untyped-call]
            self._fp_state |= SessionState.SETTING
        await super().set_charset(charset)  # type: ignore[no-untyped-call]


def _ssl_context(options: dict[str, Any]) -> ssl.SSLContext | None:
    """asyncmy takes one ``ssl`` context: build it from the URL's file options."""
    if "ssl" in options or not options:
        return options.get("ssl")
    if options.get("ssl_disabled"):
        return None
    ctx = ssl.create_default_context(cafile=options.get("ssl_ca"))
    if "ssl_cert" in options:
        ctx.load_cert_chain(
            options["ssl_cert"], options.get("ssl_key"), options.get("ssl_key_password")
        )
    if not (options.get("ssl_verify_cert") or options.get("ssl_verify_identity")):
        ctx.check_hostname = False
        if "ssl_ca" not in options:
            ctx.verify_mode = ssl.CERT_NONE
    return ctx


class AsyncMySQLDriver(MySQLBase, AsyncDriver):
    """The async adapter: asyncmy."""

    operational_error = asyncmy.errors.OperationalError
    connect_errors = (asyncmy.errors.Error, OSError)

    def __init__(self, target: Any) -> None:
        super().__init__(target)
        self._reset_supported = True

    async def connect(
        self,
        login: Login,
        *,
        autocommit: bool,
        tag: str,
        timeout: float,
        idle_timeout: float | None,
        statement_timeout: float | None,
    ) -> Any:
        t = self.target
        p = t.params
        options = bearer_ssl(t.engine, p) if login.require_tls else ssl_options(p, False)
        connection_class: Any = AsyncFleetMySQLConnection
        conn: Any = connection_class(
            host=t.host or "localhost",
            port=t.port,
            user=login.user,
            password=login.password or "",
            database=t.database,
            unix_socket=p.get("unix_socket"),
            charset=p.get("charset", "utf8mb4"),
            autocommit=autocommit,
            connect_timeout=max(0.001, timeout),
            program_name=tag,
            ssl=_ssl_context(options),
        )
        try:
            await conn.connect()
            conn._fp_init = my.init_sql(
                idle_timeout, statement_timeout, mariadb=my.is_mariadb(conn.get_server_info())
            )
            if conn._fp_init:
                await _base_query(conn, conn._fp_init)
        except BaseException:
            self.close(conn)
            raise
        conn._fp_cursor_cls = conn._cursor_cls
        conn._fp_status = _AUTOCOMMIT if autocommit else 0
        conn._fp_ready = True
        conn._fp_state = SessionState.NONE
        return conn

    def fileno(self, conn: Any) -> int:
        transport = conn._transport
        sock = None if transport is None else transport.get_extra_info("socket")
        return -1 if sock is None else int(sock.fileno())

    def alive(self, conn: Any) -> bool:
        if conn._stream_broken:
            return False
        proto = conn._proto
        if proto.length > proto.pos:  # unsolicited bytes already read: a goodbye
            return False
        return super().alive(conn)

    def clean(self, conn: Any) -> bool:
        if conn._fp_state is not _NONE or conn._transport is None:
            return False
        if conn.server_status & _CLEAN_MASK != conn._fp_status:
            return False
        result = conn._result
        if result is not None and (result.unbuffered_active or result.has_next):
            return False
        return conn._cursor_cls is conn._fp_cursor_cls

    def report(self, conn: Any) -> SessionReport:
        if conn._stream_broken:
            return SessionReport(broken=True)
        result = conn._result
        if result is not None and (result.unbuffered_active or result.has_next):
            return SessionReport(busy=True)
        return SessionReport(
            in_transaction=bool(conn.server_status & _IN_TRANS),
            state=conn._fp_state,
            settings_changed=conn.get_autocommit() != bool(conn._fp_status),
            client_changed=conn._cursor_cls is not conn._fp_cursor_cls,
        )

    def rebase(self, conn: Any) -> None:
        conn._fp_state = SessionState.NONE
        conn._fp_cursor_cls = conn._cursor_cls

    async def rollback(self, conn: Any) -> None:
        await conn.rollback()

    async def reset(self, conn: Any) -> None:
        if not self._reset_supported:
            raise asyncmy.errors.NotSupportedError(0, "COM_RESET_CONNECTION not supported")
        try:
            await conn._execute_command(my.COM_RESET_CONNECTION, b"")
            await conn._read_ok_packet()
        except asyncmy.errors.OperationalError as exc:
            if self.error_code(exc) == 1047:  # ER_UNKNOWN_COM_ERROR: server too old
                self._reset_supported = False
            raise
        await _base_query(conn, after_reset_sql(conn.character_set_name(), None, conn._fp_init))
        if conn.get_autocommit() != bool(conn._fp_status):
            await conn.autocommit(bool(conn._fp_status))
        await self.restore_client(conn)
        conn._fp_state = SessionState.NONE

    async def restore_client(self, conn: Any) -> None:
        conn._cursor_cls = conn._fp_cursor_cls

    def close(self, conn: Any) -> None:
        try:
            conn.close()
        except Exception:
            pass

    def transaction(self, conn: Any) -> AbstractAsyncContextManager[Any]:
        return _transaction(conn)

    async def fetch(
        self, conn: Any, sql: str, params: tuple[Any, ...] = ()
    ) -> list[tuple[Any, ...]]:
        cursor_class: Any = asyncmy.cursors.Cursor
        async with conn.cursor(cursor_class) as cur:
            await cur.execute(sql, params or None)
            return [tuple(row) for row in await cur.fetchall()]


@asynccontextmanager
async def _transaction(conn: Any) -> AsyncIterator[Any]:
    await conn.begin()
    try:
        yield conn
    except BaseException:
        try:
            await conn.rollback()
        except Exception:
            pass  # the original error matters; a broken connection is closed at check-in
        raise
    await conn.commit()


__all__ = ["AsyncFleetMySQLConnection", "AsyncMySQLDriver"]
