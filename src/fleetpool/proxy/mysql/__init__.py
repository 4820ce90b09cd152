"""The MySQL/MariaDB plug-in of the proxy core.

Strategy: what the core needs from an engine, in one object -- how to open a server
connection (``connector``), how to accept a client (``frontend``), how to tell the
writer from a replica (``probe``: ``@@read_only = 0``) and how to read the server's
``max_connections``. The protocol itself lives in :mod:`fleetpool.mysql` (sans-I/O)
and in the two asyncio connections of this package.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ...mysql.constants import CHARSET_UTF8MB4_GENERAL_CI, CLIENT_MYSQL
from ...mysql.login import BACKEND_CAPABILITIES, FRONTEND_CAPABILITIES, BackendLogin
from ...mysql.relay import Interner
from ...tls import ContextCache
from ..config import ProxyConfig, Upstream
from ..context import Connector
from ..pool import Pool
from ..services import Services
from ..stats import Stats
from . import backend
from .backend import ServerConnection
from .frontend import _KNOWN_DBS, PROFILE, ClientConnection, variant

log = logging.getLogger("fleetpool.proxy")

NAME = "mysql"
# The login's TLS negotiation per server_tls (what is verified: tls.client_context).
_TLS = {
    "disable": "disable",
    "allow": "prefer",
    "prefer": "prefer",
    "require": "require",
    "verify-ca": "require",
    "verify-full": "require",
}


class MySQLEngine:
    name = NAME
    default_port = 3306
    server_version = "8.0.36-fleetpool"
    # The pool opened at start serves clients with PyMySQL's defaults (fleetpool's own
    # client among them); clients with other profile flags get pools on demand.
    default_variant = variant(0)

    def __init__(self, cfg: ProxyConfig, stats: Stats) -> None:
        self.cfg = cfg
        self.stats = stats
        self.interner = Interner()
        self.collation = CHARSET_UTF8MB4_GENERAL_CI  # what server connections log in with
        self.server_tls = ContextCache()
        # caching_sha2_password's full authentication without TLS encrypts the password
        # to this key (a user known by a hash only cannot be checked by the fast path).
        self.rsa_key: Any = None

    def connector(self, up: Upstream, variant: str = "") -> Connector:
        """How a pool opens server connections to ``up``; ``variant`` carries the
        capability flags its clients agree on (frontend.variant)."""
        profile = int(variant.partition("=")[2] or "0", 16) if variant else 0
        caps = (BACKEND_CAPABILITIES & ~PROFILE) | profile
        cfg = self.cfg

        def login() -> BackendLogin:
            return BackendLogin(
                up.user,
                up.password,
                up.database,
                {"program_name": "fleetpool"},
                tls=_TLS[cfg.server_tls],  # type: ignore[arg-type]
                capabilities=caps,
                charset=self.collation,
            )

        async def connect(host: str, port: int, timeout: float) -> ServerConnection:
            return await backend.connect(
                host,
                port,
                timeout,
                login=login,
                stats=self.stats,
                init_query=cfg.init_query,
                tls_context=self.server_tls.get(cfg.server_tls, cfg.server_ca_file),
            )

        return connect

    def frontend(self, services: Services) -> Callable[[], ClientConnection]:
        return lambda: ClientConnection(services, self)

    @staticmethod
    def forget_reported(pools: Iterable[Pool]) -> None:
        """Databases may have been dropped (reload, failover): check them again."""
        for pool in pools:
            pool.plugin.pop(_KNOWN_DBS, None)

    async def prepare(self, pool: Pool) -> None:
        """Learn the server's version string (clients choose features by it): from one
        connection opened at start; until then, and if it fails, a MySQL 8 one. Also
        makes the RSA key (tens of milliseconds, so once, before any client waits)."""
        try:
            from cryptography.hazmat.primitives.asymmetric import rsa
        except ImportError:  # the mysql extra is not installed: TLS is then needed
            log.info("cryptography is not installed: full authentication needs TLS")
        else:
            self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        host, port = pool.primary
        try:
            server = await pool.open_connection()
        except Exception as exc:
            log.warning("cannot reach %s:%s at start (%s); announcing MySQL %s", host, port,
                        exc, self.server_version)  # fmt: skip
            return
        self.learnt(server.version)
        server.close("version learnt")

    def learnt(self, version: str) -> None:
        if version:
            self.server_version = version

    @property
    def frontend_capabilities(self) -> int:
        """What the proxy's greeting offers clients: what a server of its upstream's kind
        offers. A MariaDB server clears bit 0 (CLIENT_MYSQL) to tell clients it is
        MariaDB, so the proxy does too in front of one."""
        if "mariadb" in self.server_version.lower():
            return FRONTEND_CAPABILITIES & ~CLIENT_MYSQL
        return FRONTEND_CAPABILITIES

    async def _query_one(self, host: str, port: int, timeout: float, sql: str) -> Any:
        import pymysql

        up = self.cfg.upstream
        ctx = self.server_tls.get(self.cfg.server_tls, self.cfg.server_ca_file)
        tls: dict[str, Any] = {"ssl": ctx} if ctx is not None else {}

        def run() -> Any:
            conn = pymysql.connect(
                host=host,
                port=port,
                user=up.user,
                password=up.password,
                connect_timeout=max(1, int(timeout)),
                read_timeout=max(1, int(timeout)),
                **tls,
            )
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
                    row = cur.fetchone()
                return row[0] if row else None
            finally:
                conn.close()

        return await asyncio.wait_for(asyncio.to_thread(run), timeout + 1)

    async def probe(self, host: str, port: int, timeout: float) -> bool:
        """Is the server at host:port the writer (``@@read_only = 0``)?"""
        return int(await self._query_one(host, port, timeout, "SELECT @@global.read_only")) == 0

    async def max_connections(self, host: str, port: int, timeout: float) -> int | None:
        try:
            value = await self._query_one(host, port, timeout, "SELECT @@global.max_connections")
        except Exception as exc:
            log.warning("cannot read max_connections (%s); using pool_size", exc)
            return None
        return int(value) if value else None
