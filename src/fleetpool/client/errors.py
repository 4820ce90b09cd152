"""Errors the client raises: fleetpool's own types that are also the driver's ``OperationalError``.

Strategy: code written for psycopg or PyMySQL already has ``except
psycopg.OperationalError`` / ``except pymysql.err.OperationalError`` around its
database calls; fleetpool must not make those clauses miss. So, per driver, we
build (once, cached) a subclass of both the fleetpool error and the driver's
``OperationalError``. ``except fleetpool.NoConnectionsLeft`` and ``except
psycopg.OperationalError`` both catch the same instance. The original driver
exception is chained as ``__cause__``; its SQLSTATE or error number is copied to
``.sqlstate`` / ``.errno`` so callers never parse the message.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

from ..errors import FleetpoolError

E = TypeVar("E", bound=FleetpoolError)

_CACHE: dict[tuple[type[Any], type[BaseException]], type[Any]] = {}
_LOCK = threading.Lock()


def driver_error_class(kind: type[E], driver_base: type[BaseException] | None) -> type[E]:
    """Return the (cached) class deriving from ``kind`` and ``driver_base``.

    With ``driver_base=None`` (driver not known yet) ``kind`` itself is returned.
    """
    if driver_base is None:
        return kind
    key = (kind, driver_base)
    cls = _CACHE.get(key)
    if cls is None:
        with _LOCK:
            cls = _CACHE.get(key)
            if cls is None:
                cls = type(
                    kind.__name__,
                    (kind, driver_base),
                    {
                        "__module__": "fleetpool",
                        "__qualname__": kind.__name__,
                        "__doc__": f"{kind.__doc__}\n\nAlso a {driver_base.__module__}."
                        f"{driver_base.__qualname__}, so existing except clauses catch it.",
                    },
                )
                _CACHE[key] = cls
    return cls  # type: ignore[no-any-return]


def make_error(
    kind: type[E],
    driver_base: type[BaseException] | None,
    message: str,
    *,
    sqlstate: str | None = None,
    errno: int | None = None,
    **fields: Any,
) -> E:
    """Instantiate ``kind`` (as the driver-flavoured subclass) with a message and codes."""
    cls = driver_error_class(kind, driver_base)
    exc = cls(message, **fields) if fields else cls(message)
    # Attribute names match the drivers' own (psycopg: .sqlstate; PyMySQL: args[0]).
    try:
        exc.sqlstate = sqlstate  # type: ignore[attr-defined]
    except AttributeError:  # psycopg.Error.sqlstate is a read-only property
        pass
    exc.errno = errno  # type: ignore[attr-defined]
    return exc


__all__ = ["driver_error_class", "make_error"]
