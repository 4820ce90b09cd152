"""Fixtures over the throwaway servers of ``fleetpool_testing`` (a pytest plugin).

Listed in ``pytest_plugins`` of the root conftest, so every test sees them.

Session fixtures (one server for the whole run, or an existing one from the environment):

* ``pg_dsn`` -> str         $FLEETPOOL_TEST_POSTGRES_DSN, else a throwaway PostgreSQL
* ``mysql_dsn`` -> str      $FLEETPOOL_TEST_MYSQL_DSN, else a throwaway MariaDB
* ``redis_url`` -> str      $FLEETPOOL_TEST_REDIS_URL, else a throwaway redis-server
* ``moto_endpoint`` -> str  moto server URL; fake AWS credentials are in os.environ meanwhile
* ``moto_server`` -> MotoServer  the same server (``.client("dynamodb")``, ``.reset()``)

Shared servers are shared: use ``unique_name`` for keys, budgets, tables, users.

Function fixtures (fresh servers, all closed at teardown):

* ``pg_server_factory(**kwargs) -> PostgresServer`` (started; kwargs of PostgresServer:
  max_connections=50, settings=None, port=None, auth="trust", password=None,
  replication=False) and ``pg_server_factory.standby_of(primary, **kwargs)``
* ``mysql_server_factory(**kwargs) -> MariaDBServer`` (max_connections, settings, port,
  password)
* ``redis_server_factory(**kwargs) -> RedisServer`` (port, settings)
* ``unique_name`` -> str like ``t-1a2b3c4d5e``

A missing server binary skips the test with the Debian package to install
(``scripts/test`` installs them; nothing is installed from inside pytest).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import pytest

from fleetpool_testing import (
    MariaDBServer,
    MissingBinary,
    MotoServer,
    PostgresServer,
    RedisServer,
    Server,
    require_binary,
)

S = TypeVar("S", bound=Server)


def _require(*binaries: str) -> None:
    """Skip the test (with the Debian package to install) if a binary is missing."""
    try:
        for name in binaries:
            require_binary(name)
    except MissingBinary as e:
        pytest.skip(str(e))


_BINARIES: dict[type[Any], tuple[str, ...]] = {
    PostgresServer: ("initdb", "postgres"),
    MariaDBServer: ("mariadbd",),
    RedisServer: ("redis-server",),
}


class ServerFactory(Generic[S]):
    """Starts servers of one class on demand; closes them all at teardown."""

    def __init__(self, cls: type[S]) -> None:
        self.cls = cls
        self.servers: list[S] = []

    def _track(self, make: Callable[[], S]) -> S:
        _require(*_BINARIES[self.cls])
        try:
            server = make()
        except MissingBinary as e:
            pytest.skip(str(e))
        self.servers.append(server)
        return server

    def __call__(self, **kwargs: Any) -> S:
        return self._track(lambda: self.cls(**kwargs).start())

    def close(self) -> None:
        for server in reversed(self.servers):
            server.close()
        self.servers.clear()


class PostgresFactory(ServerFactory[PostgresServer]):
    def standby_of(self, primary: PostgresServer, **kwargs: Any) -> PostgresServer:
        """A started streaming standby of ``primary`` (needs ``replication=True``)."""
        return self._track(lambda: PostgresServer.standby_of(primary, **kwargs))


def _start_shared(cls: type[S]) -> S:
    _require(*_BINARIES[cls])
    try:
        return cls().start()
    except MissingBinary as e:
        pytest.skip(str(e))


# ----------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """DSN of a PostgreSQL shared by the session (superuser ``postgres``)."""
    if env := os.environ.get("FLEETPOOL_TEST_POSTGRES_DSN"):
        yield env
        return
    server = _start_shared(PostgresServer)
    try:
        yield server.dsn
    finally:
        server.close()


@pytest.fixture
def pg_server_factory() -> Iterator[PostgresFactory]:
    factory = PostgresFactory(PostgresServer)
    yield factory
    factory.close()


# ----------------------------------------------------------------- MySQL / MariaDB


@pytest.fixture(scope="session")
def mysql_dsn() -> Iterator[str]:
    """DSN of a MariaDB shared by the session (``root``, database ``test``)."""
    if env := os.environ.get("FLEETPOOL_TEST_MYSQL_DSN"):
        yield env
        return
    server = _start_shared(MariaDBServer)
    try:
        yield server.dsn
    finally:
        server.close()


@pytest.fixture
def mysql_server_factory() -> Iterator[ServerFactory[MariaDBServer]]:
    factory = ServerFactory(MariaDBServer)
    yield factory
    factory.close()


# ----------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a redis shared by the session: use ``unique_name`` for keys."""
    if env := os.environ.get("FLEETPOOL_TEST_REDIS_URL"):
        yield env
        return
    server = _start_shared(RedisServer)
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def redis_server_factory() -> Iterator[ServerFactory[RedisServer]]:
    factory = ServerFactory(RedisServer)
    yield factory
    factory.close()


# ----------------------------------------------------------------- AWS (moto)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's server mode; fake AWS credentials are in os.environ while it lives."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    server = MotoServer().start()
    with server.apply_env():
        yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_endpoint(moto_server: MotoServer) -> str:
    """Endpoint URL for boto3 clients (``endpoint_url=``), e.g. ``http://127.0.0.1:PORT``."""
    return moto_server.endpoint_url


# ----------------------------------------------------------------- names


@pytest.fixture
def unique_name() -> str:
    """A fresh name for keys, budgets, tables, users on shared servers."""
    return f"t-{uuid.uuid4().hex[:10]}"
