"""SQLAlchemy engines whose connections are fleetpool-managed: leased, reused, reset.

Strategy: SQLAlchemy's pool is the seam. :class:`FleetpoolPool` is a pool of
exactly one connection -- the :class:`fleetpool.Database`'s warm connection.
Checking a connection out of the pool is a fleetpool checkout (lease, liveness
check, reconnect); returning it is a fleetpool check-in (rollback or reset only
when the session was left dirty). SQLAlchemy's own reset-on-return is turned
off: fleetpool's check-in already rolls back an open transaction, and skipping
SQLAlchemy's unconditional ROLLBACK keeps a clean checkout free of round trips.

The connection is opened with ``autocommit=False``, the DBAPI default that
SQLAlchemy's transaction handling expects.

Example::

    from fleetpool.sqlalchemy import create_engine

    engine = create_engine("postgresql://app@db/orders", budget="redis://cache/0")
    with Session(engine) as session:
        session.add(Order(...))
        session.commit()
"""

from __future__ import annotations

import inspect
from typing import Any

import sqlalchemy
from sqlalchemy.pool import ConnectionPoolEntry, Pool
from sqlalchemy.pool.base import _ConnectionRecord

from .client.database import Database
from .client.dsn import parse_dsn

_DIALECTS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}
_DATABASE_OPTIONS = frozenset(inspect.signature(Database.__init__).parameters) - {"self", "dsn"}


class FleetpoolPool(Pool):
    """A SQLAlchemy pool of one connection owned by a :class:`fleetpool.Database`."""

    def __init__(self, creator: Any, database: Database | None = None, **kwargs: Any) -> None:
        if database is None:
            raise TypeError("FleetpoolPool needs database=: use fleetpool.sqlalchemy.create_engine")
        kwargs.setdefault("reset_on_return", None)
        # The pool never opens a connection itself: a record is only made inside a
        # checkout, around the connection that checkout returned.
        super().__init__(self._fleet_connection, **kwargs)
        self.database = database
        self._record: _ConnectionRecord | None = None
        self._fleet_conn: Any = None

    def _fleet_connection(self) -> Any:
        return self._fleet_conn

    def _do_get(self) -> ConnectionPoolEntry:
        conn = self._fleet_conn = self.database.checkout()
        try:
            record = self._record
            if (
                record is None
                or record.dbapi_connection is not conn
                or record._is_hard_or_soft_invalidated()
            ):
                # fleetpool reconnected (or SQLAlchemy invalidated the old
                # record): wrap the current connection in a fresh record.
                self._record = record = _ConnectionRecord(self)
                # The dialect's connect-time setup (SET NAMES, type registration)
                # is part of the clean state, not something to reset.
                self.database.driver.rebase(conn)
            return record
        except BaseException:
            self.database.checkin(failed=True)
            raise

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        self.database.checkin()

    def status(self) -> str:
        return f"FleetpoolPool {self.database!r}"

    def dispose(self) -> None:
        self._record = None
        self.database.close()

    def recreate(self) -> FleetpoolPool:
        return self.__class__(
            self._creator,
            database=self.database,
            recycle=self._recycle,
            reset_on_return=self._reset_on_return,
            pre_ping=self._pre_ping,
            echo=self.echo,
            logging_name=self._orig_logging_name,
            _dispatch=self.dispatch,
            dialect=self._dialect,
        )


def create_engine(url: str, **options: Any) -> sqlalchemy.Engine:
    """A SQLAlchemy ``Engine`` whose connections come from a :class:`fleetpool.Database`.

    ``url`` is a fleetpool database URL (``postgresql://``, ``mysql://``,
    ``mariadb://``; SQLAlchemy's ``+driver`` forms are accepted too).
    Keyword arguments that :class:`fleetpool.Database` accepts (``budget``,
    ``lease_ttl``, ``max_wait``, ``mode``, ``secret``...) configure the
    connection; all others go to :func:`sqlalchemy.create_engine`. The
    Database is available as ``engine.pool.database``.
    """
    db_options = {k: v for k, v in options.items() if k in _DATABASE_OPTIONS}
    engine_options = {k: v for k, v in options.items() if k not in _DATABASE_OPTIONS}
    db_options.setdefault("autocommit", False)
    database = Database(url, **db_options)
    target = parse_dsn(url)
    sa_url = sqlalchemy.make_url(url).set(drivername=_DIALECTS[target.engine])
    if target.scheme == "mariadb":
        sa_url = sa_url.set(drivername="mariadb+pymysql")

    def creator() -> Any:
        # Never called: FleetpoolPool hands out the Database's connection instead.
        raise AssertionError("FleetpoolPool opens no connection of its own")

    return sqlalchemy.create_engine(
        sa_url,
        creator=creator,
        poolclass=FleetpoolPool,
        pool_reset_on_return=None,
        database=database,
        **engine_options,
    )


__all__ = ["FleetpoolPool", "create_engine"]
