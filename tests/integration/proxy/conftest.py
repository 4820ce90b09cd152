"""Run a real fleetpool proxy (in a thread, on its own event loop) in front of the
throwaway PostgreSQL from the shared ``pg_dsn`` / ``pg_server_factory`` fixtures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from fleetpool.proxy import Proxy, ProxyConfig
from fleetpool.proxy.config import Upstream
from fleetpool.proxy.runner import new_event_loop

pytestmark = pytest.mark.integration

USER = "app"
PASSWORD = "app-secret"


def upstream_from_dsn(dsn: str) -> Upstream:
    info = conninfo_to_dict(dsn)
    host = str(info.get("host") or "127.0.0.1")
    if host.startswith("/") or host == "localhost":
        host = "127.0.0.1"
    return Upstream(
        hosts=[(host, int(info.get("port") or 5432))],
        user=str(info.get("user") or "postgres"),
        password=str(info.get("password") or ""),
        database=str(info.get("dbname") or "postgres"),
    )


@dataclass
class ProxyHandle:
    proxy: Proxy
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    user: str = USER
    password: str = PASSWORD

    @property
    def port(self) -> int:
        return self.proxy.port

    def dsn(self, user: str | None = None, password: str | None = None, **params: Any) -> str:
        user = user or self.user
        password = self.password if password is None else password
        extra = "&".join(f"{k}={v}" for k, v in params.items())
        return (
            f"postgresql://{quote(user)}:{quote(password)}@127.0.0.1:{self.port}/"
            f"{self.proxy.cfg.upstream.database}" + (f"?{extra}" if extra else "")
        )

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the proxy's loop and return its result (for inspection)."""

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(10)

    def stop(self, timeout: float = 2.0) -> None:
        if not self.thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self.proxy.stop(timeout), self.loop)
        fut.result(timeout + 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def start_proxy(cfg: ProxyConfig, config_path: str | None = None) -> ProxyHandle:
    loop = new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True, name="fleetpool-proxy")
    thread.start()

    async def make() -> Proxy:
        proxy = Proxy(cfg, config_path=config_path)
        await proxy.start()
        return proxy

    proxy = asyncio.run_coroutine_threadsafe(make(), loop).result(30)
    return ProxyHandle(proxy, loop, thread)


@pytest.fixture(scope="session")
def upstream(pg_dsn: str) -> Upstream:
    return upstream_from_dsn(pg_dsn)


@pytest.fixture
def proxy_factory(upstream: Upstream) -> Iterator[Callable[..., ProxyHandle]]:
    handles: list[ProxyHandle] = []

    def factory(**overrides: Any) -> ProxyHandle:
        up = overrides.pop("upstream", upstream)
        settings: dict[str, Any] = {
            "listen": ("127.0.0.1", 0),
            "pool_size": 4,
            "users": {USER: PASSWORD},
            # "app" authenticates to the proxy only: the server knows the upstream's user
            "server_login": "upstream",
            "connection_borrow_timeout": 10.0,
            "client_login_timeout": 10.0,
            "shutdown_timeout": 2.0,
        }
        settings.update(overrides)
        handle = start_proxy(ProxyConfig(upstream=up, **settings))
        handles.append(handle)
        return handle

    yield factory
    for handle in handles:
        handle.stop()


@pytest.fixture
def proxy(proxy_factory: Callable[..., ProxyHandle]) -> ProxyHandle:
    return proxy_factory()


@pytest.fixture
def direct(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn
