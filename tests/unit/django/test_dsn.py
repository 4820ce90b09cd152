"""The Django backends' translation of Django's connection parameters to a fleetpool URL."""

from __future__ import annotations

import pytest

pytest.importorskip("django")

from fleetpool.client.dsn import parse_dsn
from fleetpool.django._wrapper import FleetpoolWrapperMixin


class _Pg(FleetpoolWrapperMixin):
    fleet_scheme = "postgresql"


class _My(FleetpoolWrapperMixin):
    fleet_scheme = "mysql"


def test_tcp_url_keeps_user_host_port_database_and_options() -> None:
    dsn = _Pg().fleet_dsn(
        {"sslmode": "require", "client_encoding": "UTF8"}, "db.internal", 6432, "app user", "orders"
    )
    t = parse_dsn(dsn)
    assert (t.engine, t.host, t.port, t.user, t.database) == (
        "postgresql",
        "db.internal",
        6432,
        "app user",
        "orders",
    )
    assert t.params == {"sslmode": "require", "client_encoding": "UTF8"}
    assert t.password is None  # the password travels as Database(password=...), not in the URL


def test_unix_sockets_become_the_driver_parameter() -> None:
    pg = parse_dsn(_Pg().fleet_dsn({}, "/var/run/postgresql", 5433, "app", "orders"))
    assert (pg.host, pg.port) == ("/var/run/postgresql", 5433)
    my = parse_dsn(_My().fleet_dsn({}, "/run/mysqld/mysqld.sock", None, "app", "orders"))
    assert my.params["unix_socket"] == "/run/mysqld/mysqld.sock"
    assert my.database == "orders"
