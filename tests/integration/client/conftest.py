"""Fixtures for the client's integration tests: both engines, one test body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import fleetpool
from tests.integration.client.async_facade import Loop, SyncFacade


@pytest.fixture(params=["postgresql", "mysql"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def dsn(engine: str, request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("pg_dsn" if engine == "postgresql" else "mysql_dsn"))


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    """Which client the contract tests drive: ``Database`` or ``AsyncDatabase``."""
    return str(request.param)


@pytest.fixture
def make_db(flavour: str) -> Iterator[Any]:
    """``make(dsn, **kwargs)``: a Database, or an AsyncDatabase behind a blocking facade."""
    made: list[Any] = []
    loop = Loop() if flavour == "async" else None

    def make(dsn: str, **kwargs: Any) -> Any:
        kwargs.setdefault("handle_signals", False)
        db = fleetpool.Database(dsn, **kwargs) if loop is None else SyncFacade(loop, dsn, **kwargs)
        made.append(db)
        return db

    yield make
    for db in made:
        db.close()
    if loop is not None:
        loop.close()
