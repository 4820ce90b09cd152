# Strategy: with several upstream hosts, the proxy asks each in turn
# ``SELECT pg_is_in_recovery()`` and sends new server connections to the one that
# answers false. A failed connect or health check marks the primary suspect; the next
# connection attempt probes again. Clients waiting for a connection meanwhile stay
# queued (up to connection_borrow_timeout), idle clients stay connected, and only
# transactions running on a lost server connection fail -- the RDS Proxy behaviour.
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .proxy import Proxy

log = logging.getLogger("fleetpool.proxy.failover")


class NoPrimary(OSError):
    pass


class Failover:
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.hosts = list(proxy.cfg.upstream.hosts)
        self.primary: tuple[str, int] | None = None
        self._suspect = True
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def suspect(self) -> None:
        self._suspect = True

    async def is_primary(self, host: str, port: int, timeout: float = 3.0) -> bool:
        import psycopg

        up = self.proxy.cfg.upstream
        conn = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(
                host=host,
                port=port,
                user=up.user,
                password=up.password,
                dbname=up.database,
                connect_timeout=max(1, int(timeout)),
                application_name="fleetpool-probe",
            ),
            timeout,
        )
        async with conn:
            cur = await conn.execute("SELECT pg_is_in_recovery()")
            row = await cur.fetchone()
        return row is not None and row[0] is False

    async def current_primary(self) -> tuple[str, int]:
        if self.primary is not None and not self._suspect:
            return self.primary
        async with self._lock:
            if self.primary is not None and not self._suspect:
                return self.primary
            errors = []
            candidates = ([self.primary] if self.primary else []) + [
                h for h in self.hosts if h != self.primary
            ]
            for host, port in candidates:
                try:
                    if await self.is_primary(host, port):
                        self._set_primary((host, port))
                        return host, port
                    errors.append(f"{host}:{port} is a standby")
                except Exception as exc:
                    errors.append(f"{host}:{port}: {exc}")
            raise NoPrimary("no primary found: " + "; ".join(errors))

    def _set_primary(self, host: tuple[str, int]) -> None:
        old = self.primary
        self.primary = host
        self._suspect = False
        self.proxy.pool.primary = host
        if old is not None and old != host:
            log.warning("primary moved from %s:%s to %s:%s", *old, *host)
            self.proxy.pool.reconnect_idle()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._watch())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _watch(self) -> None:
        interval = max(0.5, min(5.0, self.proxy.cfg.health_check_interval or 5.0))
        while True:
            await asyncio.sleep(interval)
            if self.primary is None:
                continue
            try:
                ok = await self.is_primary(*self.primary, timeout=interval)
            except Exception:
                ok = False
            if not ok:
                log.warning("primary %s:%s lost; probing %d hosts", *self.primary, len(self.hosts))
                self._suspect = True
                try:
                    await self.current_primary()
                except NoPrimary as exc:
                    log.warning("%s", exc)
