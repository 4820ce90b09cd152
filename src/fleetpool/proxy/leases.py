# Strategy: every server connection the proxy holds is a lease in the fleet-wide
# budget, so proxy replicas and direct clients share one limit. A lease is taken
# *before* connecting (no lease, no connection: the pool treats it like a failed
# connect and waiting clients time out with the budget's explanation), renewed from
# the janitor when half its TTL is gone (policy.should_renew), and released when the
# connection closes. A lease that is lost (expired while the store was unreachable) is
# re-acquired; if that fails, the connection is retired (``expires`` = 0: closed at
# its next release, at once if idle).
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import FleetpoolError, LeaseLost
from . import policy
from .context import ServerConn, Spawner

log = logging.getLogger("fleetpool.proxy.leases")

FUNCTION = "proxy"


class LeaseManager:
    def __init__(
        self,
        budget: Any,
        *,
        ttl: float,
        wait: float,
        spawn: Spawner,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.budget = budget
        self.ttl = ttl or 60.0
        self.wait = wait
        self._spawn = spawn
        self._meta = dict(meta or {})
        self._renewing: set[int] = set()
        self._pending: set[asyncio.Task[Any]] = set()
        self._holder = f"proxy@{socket.gethostname()}:{os.getpid()}"
        self._seq = itertools.count(1)

    async def acquire(self, primary: tuple[str, int]) -> Any:
        host, port = primary
        return await self.budget.acquire(
            function=FUNCTION,
            holder=f"{self._holder}/lease-{next(self._seq)}",
            ttl=self.ttl,
            wait=self.wait,
            meta={**self._meta, "db": f"{host}:{port}"},
        )

    def release(self, server: ServerConn) -> None:
        """``server`` closed: give its lease back (in the background)."""
        lease, server.lease = server.lease, None
        if lease is not None:
            self.release_lease(lease)

    def release_lease(self, lease: Any) -> None:
        task = self._spawn(self._release(lease))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _release(self, lease: Any) -> None:
        try:
            await self.budget.release(lease)
        except FleetpoolError as exc:
            log.warning("cannot release lease %s: %s (it will expire)", lease.id, exc)

    def tick(self, servers: Iterable[ServerConn], retire: Callable[[ServerConn], None]) -> None:
        wall = time.time()
        for server in list(servers):
            lease = server.lease
            if lease is None or server.id in self._renewing:
                continue
            if policy.should_renew(lease.remaining(wall), self.ttl):
                self._renewing.add(server.id)
                self._spawn(self._renew(server, retire))

    async def _renew(self, server: ServerConn, retire: Callable[[ServerConn], None]) -> None:
        try:
            lease = server.lease
            if lease is None:
                return
            try:
                server.lease = await self.budget.renew(lease, ttl=self.ttl)
            except LeaseLost:
                log.warning("lease of %r was lost; acquiring a new one", server)
                try:
                    server.lease = await self.acquire((server.host, server.port))
                except FleetpoolError as exc:
                    log.warning("no new lease for %r (%s): retiring it", server, exc)
                    server.lease = None
                    retire(server)
            except FleetpoolError as exc:
                log.warning("cannot renew lease of %r: %s", server, exc)
        finally:
            self._renewing.discard(server.id)

    async def close(self, servers: Callable[[], set[ServerConn]]) -> None:
        # Connections closed just before report their end on the next loop turns.
        deadline = time.monotonic() + 2.0
        while servers() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for server in list(servers()):
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
