"""``ENGINE: "fleetpool.django.mysql"``: Django's MySQL/MariaDB backend on fleetpool (PyMySQL).

fleetpool's MySQL driver is PyMySQL, so Django's backend is given PyMySQL as
its ``MySQLdb`` (``pymysql.install_as_MySQLdb``). Django's converters and
client flags (``FOUND_ROWS``) are passed to the connect; the connect itself is
a fleetpool checkout (see :mod:`fleetpool.django._wrapper`).
"""

from __future__ import annotations

import sys
from typing import Any

import pymysql
from django.core.exceptions import ImproperlyConfigured

if "django.db.backends.mysql.base" in sys.modules and sys.modules.get("MySQLdb") is not pymysql:
    raise ImproperlyConfigured(
        "fleetpool.django.mysql runs Django's MySQL backend on PyMySQL, but that backend "
        "was already loaded with another MySQLdb (mysqlclient); use fleetpool.django.mysql "
        "for every MySQL alias, or import it before django.db.backends.mysql"
    )
pymysql.install_as_MySQLdb()

from django.db.backends.mysql import base  # noqa: E402

from fleetpool.django._wrapper import FleetpoolWrapperMixin  # noqa: E402

#: Connect arguments that make up the fleetpool URL, or that fleetpool sets itself.
_URL_PARTS = ("user", "password", "database", "db", "host", "port", "unix_socket", "charset")
_FLEETPOOL_SETS = ("autocommit", "connect_timeout", "program_name", "defer_connect")


class DatabaseWrapper(FleetpoolWrapperMixin, base.DatabaseWrapper):  # type: ignore[misc]
    fleet_scheme = "mysql"

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        return self.fleet_checkout(conn_params)

    def fleet_split(self, conn_params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        params = dict(conn_params)
        url = {k: params.pop(k, None) for k in _URL_PARTS}
        for key in _FLEETPOOL_SETS:
            params.pop(key, None)
        host = url["unix_socket"] or url["host"] or "localhost"
        query = {"charset": url["charset"]} if url["charset"] else {}
        dsn = self.fleet_dsn(query, host, url["port"], url["user"], url["database"] or url["db"])
        return dsn, params


__all__ = ["DatabaseWrapper"]
