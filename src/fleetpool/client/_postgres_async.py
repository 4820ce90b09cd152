"""The psycopg 3 async adapter: ``psycopg.AsyncConnection``, tracked as the blocking one.

Strategy: everything read from memory (transaction status, reported
parameters, client defaults, error classes) is :class:`PostgresBase`'s, shared
with the blocking adapter; this module adds only the coroutines that talk to
the server and the async cursor classes that note statements leaving session
state. psycopg's async connection does not read its socket while idle, so the
zero-timeout poll of the blocking adapter tells liveness here too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from ..engines import SessionState
from ..engines import postgres as pg
from ._driver import AsyncDriver
from ._postgres import _IDLE, PostgresBase, _classify, client_defaults
from .credentials import Login


class AsyncTrackedCursor(psycopg.AsyncCursor[Any]):
    """An async client-side cursor that notes statements which may leave session state."""

    async def execute(
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> Any:
        state = _classify(query)
        if state:
            self._conn._fp_state |= state  # type: ignore[attr-defined]
        return await super().execute(query, params, prepare=prepare, binary=binary)

    async def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
        state = _classify(query)
        if state:
            self.connection._fp_state |= state  # type: ignore[attr-defined]
        await super().executemany(query, *args, **kwargs)

    async def stream(self, query: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        state = _classify(query)
        if state:
            self.connection._fp_state |= state  # type: ignore[attr-defined]
        async for row in super().stream(query, *args, **kwargs):
            yield row


class AsyncTrackedServerCursor(psycopg.AsyncServerCursor[Any]):
    """A named cursor; one declared WITH HOLD outlives the transaction, so it dirties."""

    async def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        if self.withhold:
            self.connection._fp_state |= SessionState.OTHER  # type: ignore[attr-defined]
        return await super().execute(query, *args, **kwargs)


class AsyncFleetConnection(psycopg.AsyncConnection[Any]):
    """``psycopg.AsyncConnection`` that remembers what session state it may hold."""

    _fp_state: SessionState = SessionState.NONE
    _fp_params: tuple[bytes | None, ...] = ()
    _fp_defaults: tuple[Any, ...] = ()


class AsyncPostgresDriver(PostgresBase, AsyncDriver):
    """The async adapter: ``psycopg.AsyncConnection``."""

    async def connect(
        self,
        login: Login,
        *,
        autocommit: bool,
        tag: str,
        timeout: float,
        idle_timeout: float | None,
        statement_timeout: float | None,
    ) -> AsyncFleetConnection:
        conninfo = self.conninfo(
            login,
            tag=tag,
            timeout=timeout,
            idle_timeout=idle_timeout,
            statement_timeout=statement_timeout,
        )
        conn = await AsyncFleetConnection.connect(
            conninfo, autocommit=autocommit, cursor_factory=AsyncTrackedCursor
        )
        conn.server_cursor_factory = AsyncTrackedServerCursor
        self.snapshot(conn)  # type: ignore[arg-type]
        return conn

    async def rollback(self, conn: AsyncFleetConnection) -> None:
        # Not conn.rollback(): it refuses while a Transaction block is still open.
        if conn.pgconn.transaction_status != _IDLE:
            await conn.execute("ROLLBACK", prepare=False)

    async def reset(self, conn: AsyncFleetConnection) -> None:
        in_transaction = conn.pgconn.transaction_status != _IDLE
        if in_transaction and client_defaults(conn) != conn._fp_defaults:  # type: ignore[arg-type]
            await self.rollback(conn)
            in_transaction = False
        await self.restore_client(conn)
        await conn.execute(pg.reset_sql(in_transaction), prepare=False)
        self.snapshot(conn)  # type: ignore[arg-type]

    async def restore_client(self, conn: AsyncFleetConnection) -> None:
        if client_defaults(conn) == conn._fp_defaults:  # type: ignore[arg-type]
            return
        (
            autocommit,
            isolation_level,
            read_only,
            deferrable,
            conn.row_factory,
            conn.cursor_factory,
            conn.server_cursor_factory,
            conn.prepare_threshold,
        ) = conn._fp_defaults
        # The async connection sets these through coroutines (no round trip when idle).
        if conn.autocommit != autocommit:
            await conn.set_autocommit(autocommit)
        if conn.isolation_level != isolation_level:
            await conn.set_isolation_level(isolation_level)
        if conn.read_only != read_only:
            await conn.set_read_only(read_only)
        if conn.deferrable != deferrable:
            await conn.set_deferrable(deferrable)

    def close(self, conn: AsyncFleetConnection) -> None:
        try:
            # finish() closes the socket synchronously: usable from shutdown hooks.
            if not conn.closed:
                conn.pgconn.finish()
        except Exception:
            pass

    def transaction(self, conn: AsyncFleetConnection) -> AbstractAsyncContextManager[Any]:
        return conn.transaction()

    async def fetch(
        self, conn: AsyncFleetConnection, sql: str, params: tuple[Any, ...] = ()
    ) -> list[tuple[Any, ...]]:
        async with psycopg.AsyncCursor(conn, row_factory=tuple_row) as cur:
            await cur.execute(sql, params or None, prepare=False)
            return [tuple(row) for row in await cur.fetchall()] if cur.description else []


__all__ = ["AsyncFleetConnection", "AsyncPostgresDriver", "AsyncTrackedCursor"]
