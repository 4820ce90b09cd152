"""Fixtures: a real Data API endpoint in front of the throwaway PostgreSQL / MariaDB of
the shared fixtures (``pg_dsn`` / ``mysql_dsn``), one test per engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("httptools")
pytest.importorskip("boto3")

from fleetpool.dataapi.config import DataApiConfig, DatabaseTarget
from tests.integration.dataapi.helpers import KEY_ID, SECRET, ApiHandle, start_server


@pytest.fixture(params=["postgresql", "mysql"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def engine_dsn(engine: str, request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("pg_dsn" if engine == "postgresql" else "mysql_dsn"))


@pytest.fixture
def api_factory(engine: str, engine_dsn: str) -> Iterator[Callable[..., ApiHandle]]:
    handles: list[ApiHandle] = []

    def factory(**overrides: Any) -> ApiHandle:
        dsn = overrides.pop("dsn", engine_dsn)
        settings: dict[str, Any] = {
            "databases": [DatabaseTarget(dsn)],
            "listen": ("127.0.0.1", 0),
            "access_keys": {KEY_ID: SECRET},
            "pool_size": 4,
            "borrow_timeout": 10.0,
        }
        settings.update(overrides)
        handle = start_server(DataApiConfig(**settings), engine, dsn)
        handles.append(handle)
        return handle

    yield factory
    for handle in handles:
        handle.stop()


@pytest.fixture
def api(api_factory: Callable[..., ApiHandle]) -> ApiHandle:
    return api_factory()


@pytest.fixture
def rds(api: ApiHandle) -> Any:
    return api.client()
