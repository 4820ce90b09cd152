# Strategy: every server connection the proxy holds is a lease in the fleet-wide
# budget, so proxy replicas and direct clients share one limit. A lease is taken
# *before* connecting (no lease, no connection: the pool treats it like a failed
# connect and waiting clients time out with the budget's explanation), renewed from
# the janitor when half its TTL is gone, and released when the connection closes. A
# lease that is lost (expired while the store was unreachable) is re-acquired; if that
# fails, the connection is retired at its next release instead of being reused.
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from ..errors import FleetpoolError, LeaseLost

if TYPE_CHECKING:
    from .proxy import Proxy
    from .server import ServerConnection

log = logging.getLogger("fleetpool.proxy.leases")

FUNCTION = "proxy"


class LeaseManager:
    def __init__(self, proxy: Proxy, budget: Any) -> None:
        self.proxy = proxy
        self.budget = budget
        self.ttl = proxy.cfg.budget_ttl or 60.0
        self._renewing: set[int] = set()
        self._pending: set[asyncio.Task[Any]] = set()
        self._holder = f"proxy@{socket.gethostname()}:{os.getpid()}"

    async def acquire(self, server_id: int) -> Any:
        host, port = self.proxy.pool.primary
        return await self.budget.acquire(
            function=FUNCTION,
            holder=f"{self._holder}/server-{server_id}",
            ttl=self.ttl,
            wait=self.proxy.cfg.budget_wait,
            meta={"proxy_port": self.proxy.port, "db": f"{host}:{port}"},
        )

    def release(self, lease: Any) -> None:
        task = self.proxy.spawn(self._release(lease))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _release(self, lease: Any) -> None:
        try:
            await self.budget.release(lease)
        except FleetpoolError as exc:
            log.warning("cannot release lease %s: %s (it will expire)", lease.id, exc)

    def tick(self, now: float) -> None:
        wall = time.time()
        for server in list(self.proxy.pool.servers):
            lease = server.lease
            if lease is None or server.id in self._renewing:
                continue
            if lease.remaining(wall) < self.ttl / 2:
                self._renewing.add(server.id)
                self.proxy.spawn(self._renew(server))

    async def _renew(self, server: ServerConnection) -> None:
        try:
            lease = server.lease
            if lease is None:
                return
            try:
                server.lease = await self.budget.renew(lease, ttl=self.ttl)
            except LeaseLost:
                log.warning("lease of %r was lost; acquiring a new one", server)
                try:
                    server.lease = await self.acquire(server.id)
                except FleetpoolError as exc:
                    log.warning("no new lease for %r (%s): retiring it", server, exc)
                    server.lease = None
                    server.expires = 0.0  # closed at its next release
                    if server in self.proxy.pool.idle:
                        self.proxy.pool.idle.remove(server)
                        server.close("budget lease lost")
            except FleetpoolError as exc:
                log.warning("cannot renew lease of %r: %s", server, exc)
        finally:
            self._renewing.discard(server.id)

    async def close(self) -> None:
        # Connections closed just before report their end on the next loop turns.
        deadline = time.monotonic() + 2.0
        while self.proxy.pool.servers and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for server in list(self.proxy.pool.servers):
            if server.lease is not None:
                lease, server.lease = server.lease, None
                await self._release(lease)
        # Never close the store while a release still runs in its thread.
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=10)
        try:
            await asyncio.wait_for(self.budget.close(), 5)
        except (TimeoutError, FleetpoolError) as exc:
            log.warning("closing the budget: %s", exc)


async def open_budget(proxy: Proxy) -> LeaseManager:
    from ..budget import open_async_budget

    budget = open_async_budget(proxy.cfg.budget_url, proxy.cfg.budget_name)
    return LeaseManager(proxy, budget)
