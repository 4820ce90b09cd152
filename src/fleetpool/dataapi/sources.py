# Strategy: the Data API needs only two things from "where connections come from":
# borrow one connection for one statement, or hold one for a transaction. That is the
# whole ConnectionSource interface, so the endpoint runs the same way standalone (its own
# pool of async driver connections) and inside the proxy (a pool of client connections
# to the proxy's own listener, which multiplexes them onto the proxy's server pool, borrow
# queue and budget leases). Pools are the drivers' own well-kept ones (psycopg_pool;
# asyncmy's pool, chosen over aiomysql by measurement: see benchmarks/data_api.py).
#
# A Session runs one statement at a time and returns plain Python rows; results are read
# as a stream and counted as they arrive, so a huge result stops at the response limit
# instead of being buffered whole. Interrupting a statement (client gone, timeout) must
# leave the database clean: PostgreSQL cancels and drains (psycopg's stream does it on
# exit); MySQL has no in-band cancel, so the connection is killed from a side connection
# and discarded, which also rolls back any transaction it held.
from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..client.dsn import Engine, Target
from ..errors import DataApiError
from .protocol import JsonText, api_error

if TYPE_CHECKING:
    import asyncmy
    import psycopg
    import psycopg_pool

log = logging.getLogger("fleetpool.dataapi")

TOO_LARGE = "Database returned more than the allowed response-size limit"
_ROW_CHUNK = 256  # rows per network read when streaming a PostgreSQL result


@dataclass(slots=True)
class Column:
    """What the API's ``ColumnMetadata`` says about one result column."""

    name: str
    type_name: str
    jdbc_type: int
    precision: int = 0
    scale: int = 0
    nullable: int = 2  # JDBC columnNullableUnknown
    signed: bool = False
    array_base: int = 0


@dataclass(slots=True)
class Outcome:
    """One statement's result: columns (None when it returns no rows) and rows."""

    columns: list[Column] | None
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rowcount: int = 0
    last_insert_id: int | None = None


def estimate(value: Any) -> int:
    """Bytes a value takes in the JSON response, rounded up (field name included)."""
    kind = type(value)
    if kind is str:
        return len(value) * 2 + 20  # escapes can double a character
    if kind in (bytes, bytearray, memoryview):
        return len(value) * 4 // 3 + 24
    if kind is list:
        return 24 + sum(estimate(v) for v in value)
    return 32


# JDBC java.sql.Types codes, which the API reports in ColumnMetadata.type.
JDBC: dict[str, int] = {
    "bit": -7,
    "bool": -7,
    "tinyint": -6,
    "int2": 5,
    "smallint": 5,
    "int4": 4,
    "int": 4,
    "mediumint": 4,
    "oid": -5,
    "int8": -5,
    "bigint": -5,
    "float4": 7,
    "float": 7,
    "float8": 8,
    "double": 8,
    "numeric": 2,
    "decimal": 3,
    "bpchar": 1,
    "char": 1,
    "varchar": 12,
    "text": 12,
    "name": 12,
    "bytea": -2,
    "blob": -4,
    "binary": -2,
    "varbinary": -3,
    "date": 91,
    "year": 91,
    "time": 92,
    "timetz": 92,
    "timestamp": 93,
    "timestamptz": 93,
    "datetime": 93,
    "null": 0,
}
_SIGNED = {"tinyint", "int2", "smallint", "int4", "int", "mediumint", "int8", "bigint"}
_SIGNED |= {"float4", "float", "float8", "double", "numeric", "decimal"}


def column(name: str, type_name: str, precision: int = 0, scale: int = 0) -> Column:
    if type_name.startswith("_"):  # PostgreSQL array types are named _element
        base = JDBC.get(type_name[1:], 1111)
        return Column(name, type_name, 2003, precision, scale, array_base=base)
    return Column(
        name, type_name, JDBC.get(type_name, 1111), precision, scale, signed=type_name in _SIGNED
    )


class Session(abc.ABC):
    """One borrowed connection. Not shared: one statement at a time."""

    engine: Engine
    connection_id: int = 0
    broken: bool = False  # set when the connection must not go back to the pool
    handed_off: bool = False  # a continueAfterTimeout statement still owns it

    @abc.abstractmethod
    async def run(self, sql: str, params: Mapping[str, Any] | None, max_bytes: int) -> Outcome: ...

    async def run_many(
        self, sql: str, param_sets: Sequence[Mapping[str, Any]], max_bytes: int
    ) -> list[Outcome]:
        return [await self.run(sql, params, max_bytes) for params in param_sets]

    async def begin(self) -> None:
        await self.run("BEGIN", None, 0)

    async def commit(self) -> None:
        await self.run("COMMIT", None, 0)

    async def rollback(self) -> None:
        await self.run("ROLLBACK", None, 0)

    @abc.abstractmethod
    async def interrupted(self) -> None:
        """Called after a statement was abandoned mid-way (client gone, timeout):
        make sure it stops on the server and the connection is clean or broken."""


class ConnectionSource(abc.ABC):
    """Where connections come from: a pool of our own, or the proxy's listener."""

    engine: Engine
    database: str

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def borrow(self, timeout: float) -> Session:
        """A connection, waiting at most ``timeout`` s (ServiceUnavailableError after)."""

    @abc.abstractmethod
    async def give_back(self, session: Session) -> None:
        """Return a connection (discarding it when ``session.broken``)."""

    def stats(self) -> dict[str, int]:
        return {}


def busy(waited: float) -> DataApiError:
    return api_error(
        "ServiceUnavailableError",
        f"no database connection became free within {waited:g} s; retry later",
    )


# ----------------------------------------------------------------- PostgreSQL


def _pg_error(exc: Exception) -> DataApiError:
    import psycopg

    if isinstance(exc, psycopg.errors.QueryCanceled):
        return api_error("StatementTimeoutException", f"statement cancelled: {exc}")
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        return api_error("DatabaseUnavailableException", f"database connection lost: {exc}")
    sqlstate = getattr(exc, "sqlstate", None)
    prefix = f"ERROR: {exc}".rstrip()
    return api_error("DatabaseErrorException", prefix, sqlstate=sqlstate)


class PostgresSession(Session):
    engine: Engine = "postgresql"

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.connection_id = conn.info.backend_pid
        self.broken = False

    async def run(self, sql: str, params: Mapping[str, Any] | None, max_bytes: int) -> Outcome:
        import psycopg

        cur = self.conn.cursor()
        rows: list[tuple[Any, ...]] = []
        size = 0
        try:
            if not returns_rows(sql):
                # A command's result is a tag and a count: nothing to stream.
                await cur.execute(sql, params, prepare=False)  # type: ignore[arg-type]
                return self._outcome(cur, rows if cur.description is None else await cur.fetchall())
            async for row in cur.stream(sql, params, size=_ROW_CHUNK):  # type: ignore[arg-type]
                rows.append(row)
                for value in row:
                    size += estimate(value)
                if max_bytes and size > max_bytes:
                    break  # psycopg cancels the rest and drains the connection
            else:
                return self._outcome(cur, rows)
        except psycopg.Error as exc:
            if self.conn.closed or self.conn.broken:
                self.broken = True
            raise _pg_error(exc) from None
        raise api_error("BadRequestException", TOO_LARGE)

    def _outcome(self, cur: psycopg.AsyncCursor[Any], rows: list[tuple[Any, ...]]) -> Outcome:
        res = cur.pgresult
        if res is None or not res.nfields:
            return Outcome(None, rows, max(cur.rowcount, 0))
        # Read the result's field names and types straight from libpq and build the
        # column list once per result shape: the hot path repeats a few shapes.
        fields = tuple((res.fname(i) or b"", res.ftype(i), res.fmod(i)) for i in range(res.nfields))
        columns = _pg_columns.get(fields)
        if columns is None:
            columns = [self._column(*field) for field in fields]
            if len(_pg_columns) >= 512:
                _pg_columns.clear()
            _pg_columns[fields] = columns
        return Outcome(columns, rows, 0)

    def _column(self, name: bytes, oid: int, fmod: int) -> Column:
        info = self.conn.adapters.types.get(oid)
        if info is None:
            type_name = "unknown"
        elif info.array_oid == oid:  # psycopg files arrays under their element type
            type_name = "_" + info.name
        else:
            type_name = info.name
        precision, scale = 0, 0
        if type_name == "numeric" and fmod >= 4:
            precision, scale = (fmod - 4) >> 16, (fmod - 4) & 0xFFFF
        elif type_name in ("varchar", "bpchar") and fmod >= 4:
            precision = fmod - 4
        return column(name.decode(self.conn.info.encoding), type_name, precision, scale)

    async def run_many(
        self, sql: str, param_sets: Sequence[Mapping[str, Any]], max_bytes: int
    ) -> list[Outcome]:
        import psycopg

        try:
            async with self.conn.cursor() as cur:
                await cur.executemany(sql, param_sets)  # pipelined: one round trip
                return [Outcome(None, [], 1) for _ in param_sets]
        except psycopg.Error as exc:
            if self.conn.closed or self.conn.broken:
                self.broken = True
            raise _pg_error(exc) from None

    async def interrupted(self) -> None:
        # psycopg's stream() cancelled and drained on the way out; check the outcome.
        from psycopg.pq import TransactionStatus

        if self.conn.closed or self.conn.info.transaction_status == TransactionStatus.ACTIVE:
            self.broken = True


_ROWS = re.compile(
    r"(?is)^(?:\s+|--[^\n]*\n?|/\*.*?\*/)*(?:select|with|values|table|show|explain|fetch)\b"
    r"|\breturning\b"
)
_rows_memo: dict[str, bool] = {}


def returns_rows(sql: str) -> bool:
    """Whether a PostgreSQL statement is one that may return rows (and so is streamed).
    A false "yes" costs only the stream's overhead; a false "no" would buffer its rows."""
    verdict = _rows_memo.get(sql)
    if verdict is None:
        verdict = _ROWS.search(sql) is not None
        if len(_rows_memo) >= 512:
            _rows_memo.clear()
        _rows_memo[sql] = verdict
    return verdict


_pg_columns: dict[tuple[tuple[bytes, int, int], ...], list[Column]] = {}


def _pg_configure_adapters(conn: psycopg.AsyncConnection[Any]) -> None:
    from psycopg.adapt import Dumper
    from psycopg.types.string import TextLoader

    jsonb = conn.adapters.types["jsonb"].oid

    class JsonTextDumper(Dumper):
        # typeHint JSON: the text goes to the server as jsonb, unparsed on our side.
        oid = jsonb

        def dump(self, obj: Any) -> bytes:
            return str(obj).encode()

    conn.adapters.register_dumper(JsonText, JsonTextDumper)
    # The API returns these as strings: keep the server's own text (no parse/format).
    for name in ("json", "jsonb", "uuid", "interval"):
        conn.adapters.register_loader(name, TextLoader)


class PostgresSource(ConnectionSource):
    """A pool of psycopg 3 async connections (autocommit; BEGIN is explicit)."""

    engine: Engine = "postgresql"

    def __init__(
        self,
        conninfo: str,
        *,
        database: str,
        size: int,
        connect_timeout: float,
        name: str = "fleetpool-data-api",
        kwargs_factory: Callable[[], dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        from psycopg_pool import AsyncConnectionPool

        self.database = database
        fixed = {
            "autocommit": True,
            "connect_timeout": max(1, round(connect_timeout)),
            "application_name": "fleetpool-data-api",
            **kwargs,
        }

        def connect_kwargs() -> dict[str, Any]:
            # Called on every connect, so a factory can mint a fresh login token.
            return {**fixed, **(kwargs_factory() if kwargs_factory else {})}

        self.pool: psycopg_pool.AsyncConnectionPool[Any] = AsyncConnectionPool(
            conninfo,
            min_size=size,
            max_size=size,
            open=False,
            name=name,
            configure=self._configure,
            kwargs=connect_kwargs if kwargs_factory else fixed,
            reconnect_timeout=max(connect_timeout * 6, 30.0),
        )
        self.connect_timeout = connect_timeout

    @classmethod
    def from_target(cls, target: Target, size: int, connect_timeout: float) -> PostgresSource:
        kwargs: dict[str, Any] = dict(target.params)
        for key, value in (
            ("host", target.host),
            ("port", target.port),
            ("user", target.user),
            ("password", target.password),
            ("dbname", target.database),
        ):
            if value is not None:
                kwargs[key] = value
        return cls(
            "",
            database=target.database or target.user or "",
            size=size,
            connect_timeout=connect_timeout,
            **kwargs,
        )

    @staticmethod
    async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
        _pg_configure_adapters(conn)

    async def open(self) -> None:
        import psycopg_pool

        try:
            await self.pool.open(wait=True, timeout=self.connect_timeout * 3)
        except psycopg_pool.PoolTimeout as exc:
            await self.pool.close()
            from ..errors import DatabaseUnavailable

            raise DatabaseUnavailable(f"data API: cannot connect to PostgreSQL: {exc}") from exc

    async def close(self) -> None:
        await self.pool.close(timeout=2.0)

    async def borrow(self, timeout: float) -> Session:
        import psycopg_pool

        try:
            conn = await self.pool.getconn(timeout)
        except psycopg_pool.PoolTimeout:
            raise busy(timeout) from None
        return PostgresSession(conn)

    async def give_back(self, session: Session) -> None:
        assert isinstance(session, PostgresSession)
        conn = session.conn
        if session.broken and not conn.closed:
            await conn.close()
        await self.pool.putconn(conn)

    def stats(self) -> dict[str, int]:
        s = self.pool.get_stats()
        size, available = s.get("pool_size", 0), s.get("pool_available", 0)
        return {
            "pool_size": size,
            "pool_available": available,
            "in_use": size - available,
            "requests_waiting": s.get("requests_waiting", 0),
        }


# ----------------------------------------------------------------- MySQL / MariaDB

# asyncmy FIELD_TYPE codes -> type names (for ColumnMetadata and the JDBC code).
_MYSQL_TYPES: dict[int, str] = {
    0: "decimal",
    1: "tinyint",
    2: "smallint",
    3: "int",
    4: "float",
    5: "double",
    6: "null",
    7: "timestamp",
    8: "bigint",
    9: "mediumint",
    10: "date",
    11: "time",
    12: "datetime",
    13: "year",
    15: "varchar",
    16: "bit",
    245: "json",
    246: "decimal",
    247: "enum",
    248: "set",
    249: "blob",
    250: "blob",
    251: "blob",
    252: "blob",
    253: "varchar",
    254: "char",
    255: "geometry",
}


def _mysql_error(exc: Exception) -> DataApiError:
    errno = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    text = exc.args[1] if len(exc.args) > 1 else str(exc)
    if errno in (1317, 3024, 1969):  # interrupted / max_execution_time / statement timeout
        return api_error("StatementTimeoutException", f"statement cancelled: {text}")
    if errno is not None and errno >= 2000:  # client-side: lost connection, ...
        return api_error("DatabaseUnavailableException", f"database connection lost: {text}")
    return api_error("DatabaseErrorException", f"Error {errno}: {text}", errno=errno)


def _mysql_params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    out: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, list):
            raise api_error(
                "BadRequestException", f"parameter {name!r}: MySQL has no array parameters"
            )
        out[name] = str(value) if isinstance(value, uuid.UUID) else value
    return out


class MySQLSession(Session):
    engine: Engine = "mysql"

    def __init__(self, conn: asyncmy.Connection, source: MySQLSource) -> None:
        self.conn = conn
        self.source = source
        self.connection_id = conn.thread_id()
        self.broken = False

    async def run(self, sql: str, params: Mapping[str, Any] | None, max_bytes: int) -> Outcome:
        from asyncmy.cursors import SSCursor

        cur = self.conn.cursor(SSCursor)
        rows: list[tuple[Any, ...]] = []
        size = 0
        try:
            try:
                await cur.execute(sql, _mysql_params(params))
                if cur.description is None:
                    return Outcome(None, [], max(int(cur.rowcount), 0), cur.lastrowid or None)
                while True:
                    row = await cur.fetchone()
                    if row is None:
                        break
                    rows.append(row)
                    for value in row:
                        size += estimate(value)
                    if max_bytes and size > max_bytes:
                        raise api_error("BadRequestException", TOO_LARGE)
                return Outcome(self._columns(cur.description), rows, 0)
            finally:
                await cur.close()  # reads what is left of an unbuffered result
        except DataApiError:
            raise
        except Exception as exc:
            if not self.conn.connected:
                self.broken = True
            if isinstance(exc, OSError | asyncio.IncompleteReadError):
                self.broken = True
                raise api_error("DatabaseUnavailableException", str(exc)) from None
            if type(exc).__module__.startswith("asyncmy"):
                raise _mysql_error(exc) from None
            raise

    @staticmethod
    def _columns(description: Sequence[Sequence[Any]]) -> list[Column]:
        return [
            column(
                str(d[0]), _MYSQL_TYPES.get(int(d[1]), "unknown"), int(d[4] or 0), int(d[5] or 0)
            )
            for d in description
        ]

    async def begin(self) -> None:
        await self.run("START TRANSACTION", None, 0)

    async def interrupted(self) -> None:
        # The connection stopped mid-protocol: kill it server-side (stops the statement,
        # rolls back its transaction) and never reuse it.
        self.broken = True
        await self.source.kill(self.connection_id)


class MySQLSource(ConnectionSource):
    """A pool of asyncmy connections (autocommit; START TRANSACTION is explicit)."""

    engine: Engine = "mysql"

    def __init__(self, target: Target, *, size: int, connect_timeout: float) -> None:
        self.target = target
        self.database = target.database or ""
        self.size = size
        self.connect_timeout = connect_timeout
        self.pool: Any = None

    def _kwargs(self) -> dict[str, Any]:
        t = self.target
        kwargs: dict[str, Any] = {
            "host": t.host or "127.0.0.1",
            "port": t.port,
            "user": t.user or "root",
            "password": t.password or "",
            "connect_timeout": self.connect_timeout,
            "charset": "utf8mb4",
            "autocommit": True,
        }
        if t.database:
            kwargs["db"] = t.database
        return kwargs

    async def open(self) -> None:
        import asyncmy

        try:
            self.pool = await asyncio.wait_for(
                asyncmy.create_pool(minsize=self.size, maxsize=self.size, **self._kwargs()),
                self.connect_timeout * 3,
            )
        except (TimeoutError, OSError) as exc:
            from ..errors import DatabaseUnavailable

            raise DatabaseUnavailable(f"data API: cannot connect to MySQL: {exc}") from exc

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.pool.wait_closed(), 5.0)

    async def borrow(self, timeout: float) -> Session:
        try:
            conn = await asyncio.wait_for(self.pool.acquire(), timeout)
        except TimeoutError:
            raise busy(timeout) from None
        return MySQLSession(conn, self)

    async def give_back(self, session: Session) -> None:
        assert isinstance(session, MySQLSession)
        if session.broken:
            session.conn.close()
        self.pool.release(session.conn)

    async def kill(self, connection_id: int) -> None:
        import asyncmy

        started = time.monotonic()
        try:
            async with asyncio.timeout(self.connect_timeout):
                side = await asyncmy.connect(**self._kwargs())
                try:
                    async with side.cursor() as cur:
                        await cur.execute(f"KILL {int(connection_id)}")
                finally:
                    side.close()
        except Exception as exc:  # the session is discarded either way
            log.warning(
                "data API: could not kill MySQL connection %s after %.3fs: %s",
                connection_id,
                time.monotonic() - started,
                exc,
            )

    def stats(self) -> dict[str, int]:
        if self.pool is None:
            return {}
        size, available = self.pool.size, self.pool.freesize
        return {"pool_size": size, "pool_available": available, "in_use": size - available}


def source_for(target: Target, size: int, connect_timeout: float) -> ConnectionSource:
    """The standalone source for one configured upstream."""
    if target.engine == "postgresql":
        return PostgresSource.from_target(target, size, connect_timeout)
    return MySQLSource(target, size=size, connect_timeout=connect_timeout)
