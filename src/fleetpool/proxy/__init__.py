"""fleetpool's PostgreSQL proxy: many client connections onto a few server connections.

Run it with ``python -m fleetpool.proxy --listen 127.0.0.1:6432 --upstream
postgresql://user:password@127.0.0.1:5432/db`` or embed it::

    proxy = Proxy(ProxyConfig(upstream=parse_upstream(url), listen=("127.0.0.1", 0)))
    await proxy.start()
"""

from __future__ import annotations

from ..tokens import make_token, verify_token
from .config import ProxyConfig, Upstream, load_config, parse_upstream
from .worker import Proxy

__all__ = [
    "Proxy",
    "ProxyConfig",
    "Upstream",
    "load_config",
    "make_token",
    "parse_upstream",
    "verify_token",
]
