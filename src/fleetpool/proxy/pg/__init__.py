"""The PostgreSQL plug-in of the proxy core.

Strategy: everything the core needs from an engine, in one object -- how to open a
server connection (``connect``), how to accept a client (``frontend``), how to tell a
writer from a standby (``probe``) and how to read the server's ``max_connections``.
The protocol itself lives in :mod:`fleetpool.pg` (sans-I/O) and in the two asyncio
connections of this package.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ...tls import ContextCache, libpq_params
from ..config import ProxyConfig, Upstream
from ..context import Connector
from ..pool import Pool
from ..services import Services
from ..stats import Stats
from . import backend
from .backend import BackendConnection
from .frontend import REPORTED, FrontendConnection

log = logging.getLogger("fleetpool.proxy")

NAME = "postgresql"


class PostgresEngine:
    name = NAME
    default_variant = ""  # every PostgreSQL client can share every server connection
    default_port = 5432

    def __init__(self, cfg: ProxyConfig, stats: Stats) -> None:
        from ...pg.settings import Interner

        self.cfg = cfg
        self.stats = stats
        self.interner = Interner()
        # server backend pid -> pid of the client it last served (notifications)
        self.pids: dict[int, int] = {}
        self.server_tls = ContextCache()

    def connector(self, up: Upstream, variant: str = "") -> Connector:
        """How a pool opens server connections to ``up`` (its login and database)."""
        cfg = self.cfg
        startup = {"user": up.user, "database": up.database, "application_name": "fleetpool"}
        startup.update(up.params)
        startup.pop("sslmode", None)

        async def connect(host: str, port: int, timeout: float) -> BackendConnection:
            return await backend.connect(
                host,
                port,
                timeout,
                tls_mode=cfg.server_tls,
                tls_context=self.server_tls.get(cfg.server_tls, cfg.server_ca_file),
                user=up.user,
                password=up.password,
                startup=startup,
                stats=self.stats,
                max_message_size=cfg.max_message_size,
                reset_query=cfg.server_reset_query,
                init_query=cfg.init_query,
                pids=self.pids,
            )

        return connect

    def frontend(self, services: Services) -> Callable[[], FrontendConnection]:
        return lambda: FrontendConnection(services, self.interner)

    @staticmethod
    def forget_reported(pools: Iterable[Pool]) -> None:
        """Server defaults may have changed (reload, failover): learn them again."""
        for pool in pools:
            pool.plugin.pop(REPORTED, None)

    async def _query_one(self, host: str, port: int, timeout: float, sql: str) -> Any:
        import psycopg

        cfg = self.cfg
        up = cfg.upstream  # (the proxy's own login: its pools may log in as others)
        conn = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(
                host=host,
                port=port,
                user=up.user,
                password=up.password,
                dbname=up.database,
                connect_timeout=max(1, int(timeout)),
                application_name="fleetpool-probe",
                **libpq_params(cfg.server_tls, cfg.server_ca_file),
            ),
            timeout,
        )
        async with conn:
            cur = await conn.execute(sql)  # type: ignore[arg-type]
            row = await cur.fetchone()
        return row[0] if row else None

    async def probe(self, host: str, port: int, timeout: float) -> bool:
        """Is the server at host:port the writer?"""
        return await self._query_one(host, port, timeout, "SELECT pg_is_in_recovery()") is False

    async def max_connections(self, host: str, port: int, timeout: float) -> int | None:
        try:
            value = await self._query_one(host, port, timeout, "SHOW max_connections")
        except Exception as exc:
            log.warning("cannot read max_connections (%s); using pool_size", exc)
            return None
        return int(value) if value else None
