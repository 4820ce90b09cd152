# Strategy: with several upstream hosts, the proxy asks each in turn whether it is the
# writer (the plug-in's ``probe``: PostgreSQL ``pg_is_in_recovery()``, MySQL
# ``@@read_only``) and sends new server connections to the one that says yes. A failed
# connect or health check marks the primary suspect; the next connection attempt
# probes again. Clients waiting for a connection meanwhile stay queued (up to
# connection_borrow_timeout), idle clients stay connected, and only transactions
# running on a lost server connection fail -- the RDS Proxy behaviour. A change of
# primary is reported through ``on_change`` (the pool retires its connections).
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .context import Prober

log = logging.getLogger("fleetpool.proxy.failover")


class NoPrimary(OSError):
    pass


class Failover:
    def __init__(
        self,
        hosts: list[tuple[str, int]],
        probe: Prober,
        on_change: Callable[[tuple[str, int]], None],
        interval: float = 5.0,
    ) -> None:
        self.hosts = list(hosts)
        self.probe = probe
        self.on_change = on_change
        self.interval = max(0.5, min(5.0, interval or 5.0))
        self.primary: tuple[str, int] | None = None
        self._suspect = True
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def suspect(self) -> None:
        self._suspect = True

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
                    if await self.probe(host, port, 3.0):
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
        if old is not None and old != host:
            log.warning("primary moved from %s:%s to %s:%s", *old, *host)
        self.on_change(host)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._watch())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.primary is None:
                continue
            try:
                ok = await self.probe(*self.primary, self.interval)
            except Exception:
                ok = False
            if not ok:
                log.warning("primary %s:%s lost; probing %d hosts", *self.primary, len(self.hosts))
                self._suspect = True
                try:
                    await self.current_primary()
                except NoPrimary as exc:
                    log.warning("%s", exc)
