"""Targets for the MySQL fidelity scripts: the shared throwaway MariaDB, and one fleetpool
proxy (transaction mode, pool of 2) in front of it for the whole module."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import pytest

from ...conftest import start_proxy
from ..conftest import PASSWORD, USER, proxy_config
from .tap import Target


@pytest.fixture(scope="session")
def direct_target(mysql_dsn: str) -> Target:
    url = urlsplit(mysql_dsn)
    return Target(
        "direct", url.hostname or "127.0.0.1", url.port or 3306, unquote(url.username or "root"),
        unquote(url.password or ""), url.path.lstrip("/") or "test",
    )  # fmt: skip


@pytest.fixture(scope="module")
def proxy_target(mysql_dsn: str, direct_target: Target) -> Iterator[Target]:
    cfg = proxy_config(mysql_dsn, mode="transaction", pool_size=2)
    handle = start_proxy(cfg)
    try:
        yield Target("proxy", "127.0.0.1", handle.port, USER, PASSWORD, direct_target.database)
    finally:
        handle.stop()
