"""``ENGINE: "fleetpool.django.postgresql"``: Django's PostgreSQL backend (psycopg 3) on fleetpool.

Django's own backend does everything but the connect: its ``Database.connect``
is answered by a fleetpool checkout (see :mod:`fleetpool.django._wrapper`).
Django's cursor class gets fleetpool's statement tracking mixed in, so a
``SET`` or a temp table made through the ORM or ``cursor.execute`` is seen and
reset at check-in.
"""

from __future__ import annotations

import functools
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base

from fleetpool.client._postgres import TrackedCursor
from fleetpool.django._wrapper import FleetpoolWrapperMixin

if not base.is_psycopg3:
    raise ImproperlyConfigured("fleetpool.django.postgresql needs psycopg 3 (psycopg[binary])")

#: Parameters Django passes as objects, not connection-string text.
_OBJECTS = ("context", "cursor_factory", "prepare_threshold")
#: Parameters that make up the fleetpool URL itself.
_URL_PARTS = ("dbname", "user", "password", "host", "port")


@functools.cache
def tracked(cursor_class: type) -> type:
    """Django's cursor class with fleetpool's statement tracking in front."""
    return type(f"Fleet{cursor_class.__name__}", (TrackedCursor, cursor_class), {})


class _Connector:
    """Stands in for the psycopg module on the wrapper: ``connect`` checks out from fleetpool."""

    def __init__(self, wrapper: DatabaseWrapper) -> None:
        self._wrapper = wrapper

    def connect(self, **conn_params: Any) -> Any:
        return self._wrapper.fleet_checkout(conn_params)

    def __getattr__(self, name: str) -> Any:
        return getattr(psycopg, name)


class DatabaseWrapper(FleetpoolWrapperMixin, base.DatabaseWrapper):  # type: ignore[misc]
    fleet_scheme = "postgresql"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.Database = _Connector(self)

    def fleet_split(self, conn_params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        params = dict(conn_params)
        options = {k: params.pop(k) for k in _OBJECTS if k in params}
        options["cursor_factory"] = tracked(options.get("cursor_factory") or psycopg.Cursor)
        url = {k: params.pop(k, None) for k in _URL_PARTS}
        dsn = self.fleet_dsn(params, url["host"] or "", url["port"], url["user"], url["dbname"])
        return dsn, options


__all__ = ["DatabaseWrapper"]
