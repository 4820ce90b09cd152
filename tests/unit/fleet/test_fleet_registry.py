"""The strategy registry: every record names a real handler module and a known setup."""

from __future__ import annotations

import importlib.util

import pytest

from fleetpool.client.dsn import _SCHEMES
from fleetpool.errors import ConfigError
from fleetpool.fleet.setups import SETUPS, prepare
from fleetpool.fleet.strategies import DESCRIPTIONS, REGISTRY, STRATEGIES
from fleetpool.fleet.strategies._workload import engine_of, mysql_params


@pytest.mark.parametrize("name", list(REGISTRY))
def test_record_is_complete(name: str) -> None:
    spec = REGISTRY[name]
    module, _, func = spec.handler.partition(":")
    assert func == "handler"
    assert importlib.util.find_spec(module) is not None
    assert spec.setup == "" or spec.setup in SETUPS
    assert spec.engines <= set(_SCHEMES.values())
    assert spec.engines, "a strategy must run against some engine"
    if spec.engines != set(_SCHEMES.values()):
        assert spec.skip_reason, "a strategy skipped on some engine must say why"
    assert STRATEGIES[name] == spec.handler and DESCRIPTIONS[name] == spec.description


def test_unknown_setup_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown strategy setup 'nope'; known: budget"):
        prepare("nope", None)  # type: ignore[arg-type]


def test_engine_names_are_the_clients() -> None:
    assert engine_of("postgres://u@h/db") == "postgresql"
    assert engine_of("mariadb://u@h/db") == "mysql"
    with pytest.raises(ConfigError, match="unsupported database URL scheme 'redis'"):
        engine_of("redis://h")


def test_mysql_params_from_the_clients_parser() -> None:
    got = mysql_params("mysql://app:s%40cret@db:3307/orders?unix_socket=/tmp/m.sock")
    assert got == {
        "host": "db",
        "port": 3307,
        "user": "app",
        "password": "s@cret",
        "autocommit": True,
        "database": "orders",
        "unix_socket": "/tmp/m.sock",
    }
    assert mysql_params("mysql://h")["port"] == 3306
