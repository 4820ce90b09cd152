"""Fixtures for the client's integration tests: both engines, one test body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import fleetpool


@pytest.fixture(params=["postgresql", "mysql"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def dsn(engine: str, request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("pg_dsn" if engine == "postgresql" else "mysql_dsn"))


@pytest.fixture
def make_db() -> Iterator[Any]:
    made: list[fleetpool.Database] = []

    def make(dsn: str, **kwargs: Any) -> fleetpool.Database:
        kwargs.setdefault("handle_signals", False)
        db = fleetpool.Database(dsn, **kwargs)
        made.append(db)
        return db

    yield make
    for db in made:
        db.close()
