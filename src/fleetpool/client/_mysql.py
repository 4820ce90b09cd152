"""The PyMySQL adapter: a tracked connection subclass, COM_RESET_CONNECTION, error numbers.

Strategy: every PyMySQL cursor class sends its SQL through
``Connection.query``, so one override there sees all statements, whatever
cursor the user picks. The transaction and autocommit flags come with every OK
packet (``server_status``), so the check-in reads them from memory.

Reset is ``COM_RESET_CONNECTION`` (command 0x1f; MySQL >= 5.7.3, MariaDB >=
10.2.4), which PyMySQL does not expose: it is sent with PyMySQL's internal
command/OK-packet helpers, and if those are missing (a future PyMySQL) or the
server rejects the command, the client closes the connection instead -- slower,
equally clean. The reset also resets session variables to the global values, so
the ``wait_timeout`` statement is re-sent right after it.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pymysql
import pymysql.connections
import pymysql.cursors
from pymysql.constants import SERVER_STATUS

from ..engines import ErrorKind, SessionState
from ..engines import mysql as my
from ..tls import bearer_verification, client_context
from ._driver import Driver, DriverBase, cached_classifier
from .credentials import Login
from .decisions import SessionReport
from .dsn import Target

_classify = cached_classifier(my.classify_statement)
_IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
_AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
_CLEAN_MASK = _IN_TRANS | _AUTOCOMMIT
_NONE = SessionState.NONE
_TRUE = ("1", "true", "yes", "on", "required", "require", "verify_ca", "verify_identity")
_base_query = pymysql.connections.Connection.query


class FleetMySQLConnection(pymysql.connections.Connection):  # type: ignore[misc]
    """``pymysql.connections.Connection`` that remembers what session state it may hold."""

    _fp_state: SessionState = SessionState.NONE
    _fp_init: str | None = None
    _fp_cursorclass: Any = None
    _fp_ready: bool = False
    #: The expected (autocommit, in-transaction) bits of server_status when clean.
    _fp_status: int = 0

    def query(self, sql: Any, unbuffered: bool = False) -> int:
        state = _classify(sql)
        if state:
            self._fp_state |= state
        return int(_base_query(self, sql, unbuffered))

    def select_db(self, db: str) -> None:
        self._fp_state |= SessionState.DATABASE
        super().select_db(db)

    def set_character_set(self, charset: str, collation: str | None = None) -> None:
        if self._fp_ready and (charset, collation) != (self.charset, self.collation):
            self._fp_state |= SessionState.SETTING
        super().set_character_set(charset, collation)


def ssl_options(params: dict[str, str], require: bool) -> dict[str, Any]:
    keys = ("ssl_ca", "ssl_cert", "ssl_key", "ssl_key_password")
    opts: dict[str, Any] = {k: params[k] for k in keys if k in params}
    for flag in ("ssl_verify_cert", "ssl_verify_identity", "ssl_disabled"):
        if flag in params:
            opts[flag] = params[flag].lower() in _TRUE
    wanted = (params.get("ssl") or params.get("ssl_mode") or params.get("sslmode") or "").lower()
    has_files = bool(set(opts) & {"ssl_ca", "ssl_cert", "ssl_key"})
    if (require or wanted in _TRUE) and not opts.get("ssl_disabled") and not has_files:
        ctx = ssl.create_default_context()
        if not (opts.get("ssl_verify_cert") or opts.get("ssl_verify_identity")):
            # "required" without a CA means encrypted, not verified (libpq's sslmode=require).
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return {"ssl": ctx}
    return opts


def bearer_ssl(engine: str, params: dict[str, str]) -> dict[str, Any]:
    """TLS for a bearer token as the password (IAM): fleetpool.tls decides."""
    return {"ssl": client_context(*bearer_verification(engine, params))}


def after_reset_sql(charset: str, collation: str | None, init: str | None) -> str:
    """The statement sent right after COM_RESET_CONNECTION.

    Some servers reset the character set with the session: it is restored with
    the timeouts (``init``, a ``SET ...`` statement), in one statement.
    """
    names = f"SET NAMES {charset}" + (f" COLLATE {collation}" if collation else "")
    return names + (", " + init[4:] if init else "")


class MySQLBase(DriverBase):
    """What the blocking and the async MySQL adapters share: error numbers, ids, marks."""

    engine = "mysql"

    def error_kind(self, exc: BaseException) -> ErrorKind:
        return my.classify_errno(self.error_code(exc))

    def error_code(self, exc: BaseException) -> int | None:
        args = getattr(exc, "args", ())
        if args and isinstance(args[0], int):
            return args[0]
        return None

    def session_id(self, conn: Any) -> int:
        return int(conn.thread_id())

    def mark(self, conn: Any, state: SessionState) -> None:
        if state:
            conn._fp_state |= state
        else:
            conn._fp_state = SessionState.NONE


class MySQLDriver(MySQLBase, Driver):
    """The blocking adapter: PyMySQL."""

    operational_error = pymysql.err.OperationalError
    connect_errors = (pymysql.err.Error,)

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._reset_supported = True

    def connect(
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
        conn: Any = FleetMySQLConnection(
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
            defer_connect=True,
            **(bearer_ssl(t.engine, p) if login.require_tls else ssl_options(p, False)),
            **self.connect_options,
        )
        try:
            conn.connect()
            conn._fp_init = my.init_sql(
                idle_timeout, statement_timeout, mariadb=my.is_mariadb(conn.get_server_info())
            )
            if conn._fp_init:
                _base_query(conn, conn._fp_init)
        except BaseException:
            self.close(conn)
            raise
        conn._fp_cursorclass = conn.cursorclass
        conn._fp_status = _AUTOCOMMIT if autocommit else 0
        conn._fp_ready = True
        conn._fp_state = SessionState.NONE
        return conn

    def fileno(self, conn: Any) -> int:
        sock = conn._sock
        return -1 if sock is None else int(sock.fileno())

    def clean(self, conn: Any) -> bool:
        # The hot path: nothing seen, autocommit on and no transaction (both
        # from the last OK packet), no unread result.
        if conn._fp_state is not _NONE or conn._sock is None:
            return False
        if conn.server_status & _CLEAN_MASK != conn._fp_status:
            return False
        result = conn._result
        if result is not None and (result.unbuffered_active or result.has_next):
            return False
        return conn.cursorclass is conn._fp_cursorclass

    def report(self, conn: Any) -> SessionReport:
        if conn._sock is None:
            return SessionReport(broken=True)
        result = getattr(conn, "_result", None)
        if result is not None and (
            getattr(result, "unbuffered_active", False) or getattr(result, "has_next", False)
        ):
            return SessionReport(busy=True)
        return SessionReport(
            in_transaction=bool(conn.server_status & _IN_TRANS),
            state=conn._fp_state,
            settings_changed=conn.get_autocommit() != bool(conn._fp_status),
            client_changed=conn.cursorclass is not conn._fp_cursorclass,
        )

    def rollback(self, conn: Any) -> None:
        conn.rollback()

    def reset(self, conn: Any) -> None:
        if not self._reset_supported:
            raise pymysql.err.NotSupportedError(0, "COM_RESET_CONNECTION not supported")
        try:
            conn._execute_command(my.COM_RESET_CONNECTION, b"")
            conn._read_ok_packet()
        except (AttributeError, TypeError):
            self._reset_supported = False
            raise
        except pymysql.err.OperationalError as exc:
            if self.error_code(exc) == 1047:  # ER_UNKNOWN_COM_ERROR: server too old
                self._reset_supported = False
            raise
        _base_query(conn, after_reset_sql(conn.charset, conn.collation, conn._fp_init))
        if conn.get_autocommit() != bool(conn._fp_status):
            conn.autocommit(bool(conn._fp_status))
        self.restore_client(conn)
        conn._fp_state = SessionState.NONE

    def restore_client(self, conn: Any) -> None:
        conn.cursorclass = conn._fp_cursorclass

    def rebase(self, conn: Any) -> None:
        conn._fp_state = SessionState.NONE
        conn._fp_cursorclass = conn.cursorclass

    def close(self, conn: Any) -> None:
        try:
            if conn.open:
                conn.close()
        except Exception:
            try:
                conn._force_close()
            except Exception:
                pass

    def transaction(self, conn: Any) -> AbstractContextManager[Any]:
        return _transaction(conn)

    def fetch(self, conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with pymysql.cursors.Cursor(conn) as cur:
            cur.execute(sql, params or None)
            return [tuple(row) for row in cur.fetchall()]


@contextmanager
def _transaction(conn: Any) -> Iterator[FleetMySQLConnection]:
    conn.begin()
    try:
        yield conn
    except BaseException:
        try:
            conn.rollback()
        except Exception:
            pass  # the original error matters; a broken connection is closed at check-in
        raise
    conn.commit()


__all__ = [
    "FleetMySQLConnection",
    "MySQLBase",
    "MySQLDriver",
    "after_reset_sql",
    "bearer_ssl",
    "ssl_options",
]
