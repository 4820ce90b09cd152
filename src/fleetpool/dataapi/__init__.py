"""The Data API: SQL over HTTP, compatible with the AWS RDS Data API.

Strategy: this package face stays import-light -- ``protocol`` and ``sigv4`` need only
the standard library and are shared with the small client ``fleetpool.http``, which a
function deploys with the core alone -- so the server's names (which need the
``dataapi`` extra: httptools, psycopg_pool, asyncmy) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import DataApiConfig, DatabaseTarget
    from .embedded import proxy_source, start_in_proxy
    from .server import DataApiServer
    from .service import DataApiService
    from .sources import ConnectionSource, Session

_LAZY = {
    "DataApiConfig": "config",
    "DatabaseTarget": "config",
    "DataApiServer": "server",
    "DataApiService": "service",
    "ConnectionSource": "sources",
    "Session": "sources",
    "proxy_source": "embedded",
    "start_in_proxy": "embedded",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fleetpool.dataapi' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "ConnectionSource",
    "DataApiConfig",
    "DataApiServer",
    "DataApiService",
    "DatabaseTarget",
    "Session",
    "proxy_source",
    "start_in_proxy",
]
