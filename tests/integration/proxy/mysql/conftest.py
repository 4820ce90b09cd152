"""A real fleetpool proxy (in a thread, on its own event loop) in front of the throwaway
MariaDB of the shared ``mysql_dsn`` fixture, for real MySQL clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from fleetpool.proxy import ProxyConfig, parse_upstream
from tests.integration.proxy.conftest import ProxyHandle, start_proxy

pytestmark = pytest.mark.integration

USER = "app"
PASSWORD = "app-secret"


@dataclass
class MySQLProxy:
    handle: ProxyHandle
    database: str

    @property
    def port(self) -> int:
        return self.handle.port

    @property
    def proxy(self) -> Any:
        return self.handle.proxy

    def call(self, fn: Callable[[], Any]) -> Any:
        return self.handle.call(fn)

    def kwargs(self, **extra: Any) -> dict[str, Any]:
        """PyMySQL/mysqlclient-style connect() arguments for the proxy."""
        out: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": USER,
            "password": PASSWORD,
            "database": self.database,
        }
        out.update(extra)
        return out

    def url(self, scheme: str = "mysql+pymysql") -> str:
        return f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{self.database}"


def proxy_config(url: str, **overrides: Any) -> ProxyConfig:
    """The tests' proxy in front of the MySQL server at ``url``: transaction mode, a pool of
    4, the user ``app`` (the server knows the URL's user), short timeouts."""
    settings: dict[str, Any] = {
        "listen": ("127.0.0.1", 0),
        "pool_size": 4,
        "users": {USER: PASSWORD},
        "server_login": "upstream",  # "app" is the proxy's user; the server knows root
        "connection_borrow_timeout": 10.0,
        "client_login_timeout": 10.0,
        "shutdown_timeout": 2.0,
    }
    settings.update(overrides)
    upstream = settings.pop("upstream", None) or parse_upstream(url)
    return ProxyConfig(upstream=upstream, **settings)


@pytest.fixture
def mysql_proxy_factory(mysql_dsn: str) -> Iterator[Callable[..., MySQLProxy]]:
    handles: list[ProxyHandle] = []
    database = urlsplit(mysql_dsn).path.lstrip("/") or "test"

    def factory(**overrides: Any) -> MySQLProxy:
        url = overrides.pop("upstream_url", mysql_dsn)
        handle = start_proxy(proxy_config(url, **overrides))
        handles.append(handle)
        return MySQLProxy(handle, database)

    yield factory
    for handle in handles:
        handle.stop()


@pytest.fixture
def mysql_proxy(mysql_proxy_factory: Callable[..., MySQLProxy]) -> MySQLProxy:
    return mysql_proxy_factory()
