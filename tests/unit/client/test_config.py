"""Construction is I/O-free and validates; errors subclass the driver's OperationalError."""

from __future__ import annotations

import psycopg
import pymysql
import pytest

import fleetpool
from fleetpool.client.dsn import budget_key, default_budget_name, parse_dsn
from fleetpool.client.errors import driver_error_class, make_error


def test_database_construction_does_no_io() -> None:
    # Nothing listens on port 1: constructing must still succeed.
    db = fleetpool.Database("postgresql://u:pw@127.0.0.1:1/app", budget="memory://")
    assert db.engine == "postgresql" and db.session_id is None
    assert "pw" not in repr(db)
    assert db.budget_name == "postgresql://127.0.0.1:1/app"


@pytest.mark.parametrize(
    "dsn",
    ["", "http://x/y", "postgresql://h:notaport/db", "mysql://h:99999999/db", "redis://h/0"],
)
def test_bad_dsns_raise_config_error(dsn: str) -> None:
    with pytest.raises(fleetpool.ConfigError) as info:
        fleetpool.Database(dsn)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "pooled"},
        {"lease_ttl": 0},
        {"max_wait": -1},
        {"connect_timeout": float("nan")},
        {"budget": 42},
        {"reap_threshold": 1.5},
        {"password": "x", "secret": "y"},
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(fleetpool.ConfigError):
        fleetpool.Database("postgresql://h/db", **kwargs)  # type: ignore[arg-type]


def test_function_defaults_to_lambda_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-api")
    assert fleetpool.Database("mysql://h/db").function == "orders-api"


def test_parse_dsn_forms() -> None:
    t = parse_dsn("mariadb://us%40er:p%2Fw@db.example:3307/shop?ssl=true")
    assert (t.engine, t.host, t.port, t.user, t.password, t.database) == (
        "mysql",
        "db.example",
        3307,
        "us@er",
        "p/w",
        "shop",
    )
    assert t.params == {"ssl": "true"}
    assert parse_dsn("postgres://h/db").port == 5432
    assert parse_dsn("postgresql+psycopg://h/db").engine == "postgresql"
    assert default_budget_name(parse_dsn("mysql://h/db")) == "mysql://h:3306/db"
    assert budget_key(None) == "-" and len(budget_key("x")) == 8


def test_driver_flavoured_errors_are_cached_and_catchable() -> None:
    cls = driver_error_class(fleetpool.NoConnectionsLeft, psycopg.OperationalError)
    assert cls is driver_error_class(fleetpool.NoConnectionsLeft, psycopg.OperationalError)
    err = make_error(
        fleetpool.DatabaseUnavailable, pymysql.err.OperationalError, "down", errno=2003
    )
    assert isinstance(err, fleetpool.DatabaseUnavailable)
    assert isinstance(err, pymysql.err.OperationalError)
    assert err.errno == 2003  # type: ignore[attr-defined]
    with pytest.raises(psycopg.OperationalError):
        raise make_error(fleetpool.NoConnectionsLeft, psycopg.OperationalError, "full")
