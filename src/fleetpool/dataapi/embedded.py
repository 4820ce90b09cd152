# Strategy: inside the proxy process the Data API is one more client of the proxy. Its
# connection source is a pool of psycopg connections to the proxy's own listener, so
# every statement goes through the proxy's borrow queue onto its server pool, under its
# budget leases, and shows up in its metrics -- with no second pool, no second budget and
# no private interface into the proxy that its rebuild could break. Client connections to
# a transaction-pooling proxy hold no server connection between transactions, so this
# pool may be larger than the proxy's server pool; the proxy still decides how many
# statements reach the database at once.
#
# The Data API logs in to the proxy with a user whose password the proxy holds in plain
# text, or -- when the proxy has a token secret -- as the upstream's user with a fresh
# signed token per connection (psycopg_pool calls the kwargs function on every connect).
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import ConfigError
from ..tokens import make_token
from .config import DataApiConfig, from_mapping
from .sources import PostgresSource

if TYPE_CHECKING:
    from ..proxy.config import ProxyConfig
    from .server import DataApiServer

_HASHED = ("md5", "SCRAM-SHA-256$")


def _loopback(host: str) -> str:
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def login_for(proxy_cfg: ProxyConfig, user_secrets: Mapping[str, str]) -> tuple[str, Any]:
    """(user, password or a function minting one) the Data API logs in to the proxy with."""
    for user, secret in user_secrets.items():
        if not secret.startswith(_HASHED):
            return user, secret
    token_secret = proxy_cfg.effective_token_secret()
    if token_secret:
        # As the upstream's own user: the proxy always has its server password.
        user = proxy_cfg.upstream.user
        return user, lambda: make_token(token_secret, user, time.time(), 3600.0)
    raise ConfigError(
        "data API inside the proxy: it logs in to the proxy like any client and needs a "
        "user with a plain-text password in `users`, or `token_secret` set"
    )


def proxy_source(
    proxy_cfg: ProxyConfig,
    port: int,
    user_secrets: Mapping[str, str],
    *,
    size: int,
    connect_timeout: float,
) -> PostgresSource:
    """A connection source whose connections are clients of the proxy on ``port``."""
    user, password = login_for(proxy_cfg, user_secrets)
    fixed: dict[str, Any] = {
        "host": _loopback(proxy_cfg.listen[0]),
        "port": port,
        "dbname": proxy_cfg.upstream.database,
        "user": user,
        "sslmode": "require" if proxy_cfg.client_tls == "require" else "prefer",
    }
    if callable(password):
        mint = password

        def kwargs() -> dict[str, Any]:
            return {**fixed, "password": mint()}

        return PostgresSource(
            "",
            database=proxy_cfg.upstream.database,
            size=size,
            connect_timeout=connect_timeout,
            kwargs_factory=kwargs,
        )
    return PostgresSource(
        "",
        database=proxy_cfg.upstream.database,
        size=size,
        connect_timeout=connect_timeout,
        **fixed,
        password=password,
    )


def config_for_proxy(
    proxy_cfg: ProxyConfig, listen: str, settings: Mapping[str, Any] | None = None
) -> DataApiConfig:
    """The Data API config for a proxy: ``listen`` is the proxy's ``data_api_listen``,
    ``settings`` its ``[data_api]`` table (access_keys, limits, ...; no upstream: the
    proxy is the upstream)."""
    raw = dict(settings or {})
    if "upstream" in raw or "databases" in raw:
        raise ConfigError("[data_api] inside the proxy config takes no upstream: it is the proxy")
    up = proxy_cfg.upstream
    host, port = proxy_cfg.listen
    raw["listen"] = listen
    raw.setdefault("token_secret", proxy_cfg.effective_token_secret())
    cfg = from_mapping(
        {
            **raw,
            "upstream": [
                f"postgresql://{quote(up.user)}@{_loopback(host)}:{port}/{quote(up.database)}"
            ],
        },
        "[data_api]",
    )
    return cfg


async def start_in_proxy(
    proxy_cfg: ProxyConfig,
    proxy_port: int,
    cfg: DataApiConfig,
    user_secrets: Mapping[str, str] | None = None,
) -> DataApiServer:
    """Start the Data API in the running proxy's event loop; ``await server.stop()`` on
    shutdown. Call after the proxy's listener is up (``proxy_port`` is its real port);
    ``user_secrets`` defaults to ``proxy_cfg.user_secrets()``."""
    from .server import DataApiServer
    from .service import DataApiService

    secrets = proxy_cfg.user_secrets() if user_secrets is None else user_secrets
    source = proxy_source(
        proxy_cfg, proxy_port, secrets, size=cfg.pool_size, connect_timeout=cfg.connect_timeout
    )
    server = DataApiServer(cfg, DataApiService(cfg, [source]))
    await server.start()
    return server
