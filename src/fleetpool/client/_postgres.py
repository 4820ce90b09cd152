"""The psycopg 3 adapter: a tracked connection subclass, reset, liveness, error codes.

Strategy: the user receives a real ``psycopg.Connection`` (a subclass). Its
cursor classes note which statements may leave session state (by text, through
a cached classifier) before running them; everything else the check-in needs is
already in libpq's memory: the transaction status and the parameters the server
reports by itself (ParameterStatus), which catch a ``SET TimeZone`` made inside
a function body that the text rules cannot see.

Reset is ``ROLLBACK`` if a transaction is open, then one batch equivalent to
``DISCARD ALL`` except that it keeps psycopg's own prepared statements:
``DISCARD ALL`` would deallocate them behind psycopg's back, and psycopg's
automatic prepared-statement cache would then name statements the server no
longer has ("prepared statement _pg3_N does not exist").
"""

from __future__ import annotations

import math
import operator
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo
from psycopg.rows import tuple_row

from ..engines import ErrorKind, SessionState
from ..engines import postgres as pg
from ..tls import bearer_verification, libpq_params
from ._driver import Driver, DriverBase, cached_classifier
from .credentials import Login
from .decisions import SessionReport
from .dsn import Target

_classify = cached_classifier(pg.classify_statement)
_REPORTED = tuple(name.encode() for name in pg.REPORTED_PARAMETERS)
_IDLE = pq.TransactionStatus.IDLE
_ACTIVE = pq.TransactionStatus.ACTIVE
_INTRANS = pq.TransactionStatus.INTRANS
_INERROR = pq.TransactionStatus.INERROR
_NONE = SessionState.NONE


class TrackedCursor(psycopg.Cursor[Any]):
    """A client-side cursor that notes statements which may leave session state."""

    def execute(
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
        return super().execute(query, params, prepare=prepare, binary=binary)

    def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
        state = _classify(query)
        if state:
            self.connection._fp_state |= state  # type: ignore[attr-defined]
        super().executemany(query, *args, **kwargs)

    def stream(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        state = _classify(query)
        if state:
            self.connection._fp_state |= state  # type: ignore[attr-defined]
        return super().stream(query, *args, **kwargs)


class TrackedServerCursor(psycopg.ServerCursor[Any]):
    """A named cursor; one declared WITH HOLD outlives the transaction, so it dirties."""

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        if self.withhold:
            self.connection._fp_state |= SessionState.OTHER  # type: ignore[attr-defined]
        return super().execute(query, *args, **kwargs)


class FleetConnection(psycopg.Connection[Any]):
    """``psycopg.Connection`` that remembers what session state it may hold."""

    _fp_state: SessionState = SessionState.NONE
    _fp_params: tuple[bytes | None, ...] = ()
    _fp_defaults: tuple[Any, ...] = ()


# Read on every check-in (the hot path), so with C-level helpers: attrgetter and
# map build the tuples without a Python frame per item.
client_defaults: Callable[[FleetConnection], tuple[Any, ...]] = operator.attrgetter(
    "autocommit",
    "isolation_level",
    "read_only",
    "deferrable",
    "row_factory",
    "cursor_factory",
    "server_cursor_factory",
    "prepare_threshold",
)


def reported(conn: FleetConnection) -> tuple[bytes | None, ...]:
    return tuple(map(conn.pgconn.parameter_status, _REPORTED))


class PostgresBase(DriverBase):
    """What the blocking and the async psycopg adapters share: all but the I/O."""

    engine = "postgresql"
    operational_error = psycopg.OperationalError
    connect_errors = (psycopg.Error,)

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        #: False once a server rejected idle_session_timeout (PostgreSQL < 14).
        self.idle_session = True
        #: SQLSTATE learnt by the last startup probe (libpq gives none on connect).
        self.probed_sqlstate: str | None = None

    def conninfo(
        self,
        login: Login,
        *,
        tag: str,
        timeout: float,
        idle_timeout: float | None,
        statement_timeout: float | None,
    ) -> str:
        """The libpq connection string: the URL's parameters, the session timeouts, the tag."""
        t = self.target
        params: dict[str, Any] = dict(t.params)
        ours = pg.startup_options(idle_timeout, statement_timeout, idle_session=self.idle_session)
        theirs = params.pop("options", "")
        params["options"] = f"{ours} {theirs}".strip()
        params["application_name"] = tag[:63]
        # libpq counts whole seconds (and psycopg at least 2).
        params["connect_timeout"] = max(1, math.ceil(timeout))
        if login.require_tls:
            # A bearer token as the password: fleetpool.tls decides the verification.
            params.update(libpq_params(*bearer_verification(t.engine, t.params)))
        for key, value in (
            ("host", t.host),
            ("port", t.port),
            ("dbname", t.database),
            ("user", login.user),
            ("password", login.password),
        ):
            if value is not None:
                params[key] = value
        return make_conninfo("", **params)

    def rebase(self, conn: FleetConnection) -> None:
        self.snapshot(conn)

    def snapshot(self, conn: FleetConnection) -> None:
        """Record the just-connected (or just-reset) state that check-in compares with."""
        conn._fp_state = SessionState.NONE
        conn._fp_params = reported(conn)
        conn._fp_defaults = client_defaults(conn)

    def error_kind(self, exc: BaseException) -> ErrorKind:
        self.probed_sqlstate = None
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate is None and isinstance(exc, psycopg.OperationalError):
            # libpq reports a failed connection as text only. Ask the server
            # directly what it answers to a startup packet: its ErrorResponse
            # carries the SQLSTATE (53300 server full, 57P03 starting up...).
            probed = self.probe()
            if probed == "accepting":
                # The server takes connections, so the login itself failed:
                # credentials (refreshable once) or a missing database/role.
                return ErrorKind.AUTH
            if probed is not None:
                exc.add_note(f"SQLSTATE {probed} (from a startup probe)")
                self.probed_sqlstate = probed
                return pg.classify_sqlstate(probed)
            return ErrorKind.TRANSIENT
        return pg.classify_sqlstate(sqlstate)

    def probe(self, timeout: float = 1.0) -> str | None:
        """Send a bare StartupMessage; return the SQLSTATE of the server's refusal,
        ``"accepting"`` if it went on with the handshake, ``None`` if unreachable."""
        t = self.target
        host = (t.host or "/var/run/postgresql").split(",")[0]
        try:
            if host.startswith("/"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(f"{host}/.s.PGSQL.{t.port}")
            else:
                sock = socket.create_connection((host, t.port), timeout=timeout)
        except OSError:
            return None
        try:
            sock.sendall(pg.startup_packet(t.user or "postgres", t.database))
            data = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
                try:
                    return pg.parse_startup_reply(data) or "accepting"
                except ValueError:
                    if len(data) > 65536:
                        return None
                    continue
            return None
        except OSError:
            return None
        finally:
            sock.close()

    def error_code(self, exc: BaseException) -> str | None:
        return getattr(exc, "sqlstate", None) or self.probed_sqlstate

    def retry_without_option(self, exc: BaseException) -> bool:
        """The server is older than 14 and refused ``idle_session_timeout``: retry without."""
        if self.idle_session and getattr(exc, "sqlstate", None) == pg.UNDEFINED_PARAMETER:
            self.idle_session = False
            return True
        return False

    def session_id(self, conn: FleetConnection) -> int:
        return int(conn.info.backend_pid)

    def fileno(self, conn: FleetConnection) -> int:
        if conn.closed or conn.broken:
            return -1
        return int(conn.pgconn.socket)

    def clean(self, conn: FleetConnection) -> bool:
        # The hot path: idle, nothing seen, nothing reported changed.
        return (
            conn._fp_state is _NONE
            and conn.pgconn.transaction_status == _IDLE
            and reported(conn) == conn._fp_params
            and client_defaults(conn) == conn._fp_defaults
        )

    def report(self, conn: FleetConnection) -> SessionReport:
        if conn.closed or conn.broken:
            return SessionReport(broken=True)
        status = conn.pgconn.transaction_status
        if status == _ACTIVE:
            return SessionReport(busy=True)
        if status not in (_IDLE, _INTRANS, _INERROR):
            return SessionReport(broken=True)
        return SessionReport(
            in_transaction=status != _IDLE,
            state=conn._fp_state,
            settings_changed=reported(conn) != conn._fp_params,
            client_changed=client_defaults(conn) != conn._fp_defaults,
        )

    def mark(self, conn: FleetConnection, state: SessionState) -> None:
        if state:
            conn._fp_state |= state
        else:
            conn._fp_state = SessionState.NONE


class PostgresDriver(PostgresBase, Driver):
    """The blocking adapter: ``psycopg.Connection``."""

    def connect(
        self,
        login: Login,
        *,
        autocommit: bool,
        tag: str,
        timeout: float,
        idle_timeout: float | None,
        statement_timeout: float | None,
    ) -> FleetConnection:
        conninfo = self.conninfo(
            login,
            tag=tag,
            timeout=timeout,
            idle_timeout=idle_timeout,
            statement_timeout=statement_timeout,
        )
        options: dict[str, Any] = {"cursor_factory": TrackedCursor, **self.connect_options}
        conn = FleetConnection.connect(conninfo, autocommit=autocommit, **options)
        conn.server_cursor_factory = TrackedServerCursor
        self.snapshot(conn)
        return conn

    def rollback(self, conn: FleetConnection) -> None:
        # Not conn.rollback(): it refuses while a Transaction block object is
        # still open, and an invocation that leaked one is exactly our case.
        if conn.pgconn.transaction_status != _IDLE:
            conn.execute("ROLLBACK", prepare=False)

    def reset(self, conn: FleetConnection) -> None:
        in_transaction = conn.pgconn.transaction_status != _IDLE
        if in_transaction and client_defaults(conn) != conn._fp_defaults:
            # Autocommit can only be restored outside a transaction.
            self.rollback(conn)
            in_transaction = False
        self.restore_client(conn)
        # A parameterless execute goes out as one simple-query message, so the
        # whole batch (with its ROLLBACK) is one round trip.
        conn.execute(pg.reset_sql(in_transaction), prepare=False)
        self.snapshot(conn)

    def restore_client(self, conn: FleetConnection) -> None:
        if client_defaults(conn) == conn._fp_defaults:
            return
        (
            conn.autocommit,
            conn.isolation_level,
            conn.read_only,
            conn.deferrable,
            conn.row_factory,
            conn.cursor_factory,
            conn.server_cursor_factory,
            conn.prepare_threshold,
        ) = conn._fp_defaults

    def close(self, conn: FleetConnection) -> None:
        try:
            conn.close()
        except Exception:
            pass

    def transaction(self, conn: FleetConnection) -> AbstractContextManager[Any]:
        return conn.transaction()

    def fetch(
        self, conn: FleetConnection, sql: str, params: tuple[Any, ...] = ()
    ) -> list[tuple[Any, ...]]:
        with psycopg.Cursor(conn, row_factory=tuple_row) as cur:
            cur.execute(sql, params or None, prepare=False)
            return [tuple(row) for row in cur.fetchall()] if cur.description else []


__all__ = [
    "FleetConnection",
    "PostgresBase",
    "PostgresDriver",
    "TrackedCursor",
    "client_defaults",
    "reported",
]
