# Strategy: the pool hands server connections to clients first come, first served.
# ``acquire`` never blocks: it attaches an idle connection at once (LIFO, so a few
# connections stay hot and the rest age out) or queues the client with a timer for
# ``connection_borrow_timeout``. ``release`` gives the connection straight to the
# oldest waiter. Opening connections is the only asynchronous work; it is started
# when a client waits and the pool has room, and retried with backoff while clients
# still wait -- which is also what holds new transactions during a failover until a
# primary answers. Maintenance (idle timeout, lifetime, min_idle, health checks)
# asks the pure functions in policy.py what to do.
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..errors import CapacityError, FleetpoolError
from . import policy
from .server import ServerConnection, ServerLoginError, connect_server

if TYPE_CHECKING:
    from .client import ClientConnection
    from .proxy import Proxy

log = logging.getLogger("fleetpool.proxy.pool")


class Pool:
    def __init__(self, proxy: Proxy, max_size: int) -> None:
        self.proxy = proxy
        self.cfg = proxy.cfg
        self.max_size = max_size
        self.idle: list[ServerConnection] = []
        self.servers: set[ServerConnection] = set()
        self.waiters: deque[ClientConnection] = deque()
        self.connecting = 0
        self.params: dict[str, str] | None = None
        self.last_error = ""
        self.last_error_code = "08006"
        self.failing = False  # the latest attempt to open a connection failed
        self.paused = False
        self._attempt = 0
        self._expiry_handle: asyncio.TimerHandle | None = None
        self._fatal: ServerLoginError | None = None
        self._fatal_at = 0.0
        self._lease_seq = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._rand = random.Random()
        self.primary: tuple[str, int] = proxy.cfg.upstream.hosts[0]

    def __repr__(self) -> str:
        return (
            f"<Pool [servers: {len(self.servers)} total, {len(self.idle)} idle, "
            f"{self.connecting} connecting | clients: {len(self.waiters)} waiting]>"
        )

    @property
    def active(self) -> int:
        return len(self.servers) - len(self.idle)

    # -- hand-out and return ---------------------------------------------------------

    def acquire(self, client: ClientConnection) -> None:
        """Attach a server connection to ``client`` now, or queue it."""
        now = time.monotonic()
        if not self.try_attach(client, now):
            self.enqueue(client, now)

    def try_attach(self, client: ClientConnection, now: float) -> bool:
        """Attach an idle server connection at once, if there is one and nobody waits."""
        server = self.checkout(now)
        if server is None:
            return False
        client.attach(server, now)
        return True

    def checkout(self, now: float) -> ServerConnection | None:
        """Take an idle server connection, if there is one and nobody waits (hot path).

        The caller attaches it synchronously: no future, no task switch.
        """
        if self.waiters or self.paused:
            return None
        idle = self.idle
        while idle:
            server = idle.pop()
            if server.alive and now < server.expires:
                self.proxy.stats.borrowed_at_once()
                return server
            server.close("max_lifetime reached" if server.alive else "broken")
        return None

    def enqueue(self, client: ClientConnection, now: float) -> None:
        """Queue ``client`` (first come, first served) and open a connection if allowed."""
        # Once per queued request, so set the client's fields here. No timer per
        # waiter: the queue is FCFS, so one periodic check of its head finds every
        # expired wait (see _expire_waiters).
        self.waiters.append(client)
        client.waiting = True
        client.wait_started = now
        if self._expiry_handle is None and self.cfg.connection_borrow_timeout:
            self._expiry_handle = asyncio.get_running_loop().call_later(
                min(0.1, self.cfg.connection_borrow_timeout), self._expire_waiters
            )
        if len(self.servers) + self.connecting < self.max_size:  # (a full pool is usual)
            self._grow()

    def _expire_waiters(self) -> None:
        """Fail the clients that waited longer than connection_borrow_timeout."""
        self._expiry_handle = None
        limit = self.cfg.connection_borrow_timeout
        now = time.monotonic()
        while self.waiters and (
            now - self.waiters[0].wait_started >= limit or self.waiters[0].closed
        ):
            client = self.waiters.popleft()
            if not client.closed:
                client.wait_timed_out()
        if self.waiters:
            self._expiry_handle = asyncio.get_running_loop().call_later(
                min(0.1, limit), self._expire_waiters
            )

    def cancel_wait(self, client: ClientConnection) -> None:
        try:
            self.waiters.remove(client)
        except ValueError:
            pass

    def release(self, server: ServerConnection, now: float | None = None) -> None:
        """Take a server connection back (idle, or straight to the oldest waiter)."""
        if not server.alive or server.busy:
            server.close("released while broken or busy")
            return
        if now is None:
            now = time.monotonic()
        if now >= server.expires:
            server.close("max_lifetime reached")
            self._grow()
            return
        if self.proxy.draining and not self.waiters:
            server.close("shutting down")
            return
        if len(server.prepared) > self.cfg.max_prepared_statements:
            server.reset("DEALLOCATE ALL")  # comes back here once the server is clean
            return
        waiters = self.waiters
        while waiters and not self.paused:
            client = waiters.popleft()
            if client.closed:
                continue
            client.waiting = False
            self.proxy.stats.borrowed(now - client.wait_started)
            client.attach(server, now)
            return
        server.idle_since = now
        self.idle.append(server)

    def forget(self, server: ServerConnection) -> None:
        """A server connection closed: drop it from every list."""
        self.servers.discard(server)
        try:
            self.idle.remove(server)
        except ValueError:
            pass
        self.proxy.release_lease(server)
        if self.waiters:
            self._grow()

    def resume(self) -> None:
        self.paused = False
        while self.waiters and self.idle:
            self.release(self.idle.pop())
        self._grow()

    # -- opening connections ---------------------------------------------------------

    def _grow(self) -> None:
        if self.paused:
            return
        needed = len(self.waiters) - self.connecting
        room = self.max_size - len(self.servers) - self.connecting
        for _ in range(min(needed, room)):
            self.connecting += 1  # counted now: the task starts later
            self._spawn(self._open_one())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open_one(self) -> None:
        # The caller has already counted this attempt in ``connecting``.
        server: ServerConnection | None = None
        lease = None
        try:
            if self.proxy.budget is not None:
                lease = await self.proxy.budget.acquire(self._next_lease_id())
            server = await self.open_connection()
        except (TimeoutError, OSError, ServerLoginError, FleetpoolError) as exc:
            if lease is not None:
                self.proxy.budget.release(lease)
            self._failed(exc)
        finally:
            self.connecting -= 1
        if server is None:
            return
        self._attempt = 0
        self.failing = False
        server.lease = lease
        if server.state == "closed":  # died between login and now
            self.proxy.release_lease(server)
            return
        self.servers.add(server)
        if self.params is None:
            self.params = dict(server.startup_params)
        if self.cfg.init_query:
            server.reset(self.cfg.init_query)  # releases itself when done
        else:
            self.release(server)

    def _next_lease_id(self) -> int:
        self._lease_seq += 1
        return self._lease_seq

    async def open_connection(self) -> ServerConnection:
        """Connect and log in to the current primary (finding it first if needed)."""
        host, port = self.primary
        if self.proxy.failover is not None:
            host, port = await self.proxy.failover.current_primary()
        server = await connect_server(self.proxy, host, port, self.cfg.server_connect_timeout)
        self.proxy.stats.server_connects += 1
        server.expires = policy.lifetime_deadline(
            server.created, self.cfg.max_lifetime, self.cfg.lifetime_jitter, self._rand.random()
        )
        return server

    def _failed(self, exc: BaseException) -> None:
        self.last_error = str(exc) or type(exc).__name__
        self.failing = True
        code = getattr(exc, "code", None)
        if isinstance(exc, CapacityError):
            code = "53300"
        self.last_error_code = code if isinstance(code, str) and len(code) == 5 else "08006"
        self.proxy.stats.server_connect_errors += 1
        log.warning("cannot open server connection: %s", self.last_error)
        if self.proxy.failover is not None:
            self.proxy.failover.suspect()
        if isinstance(exc, ServerLoginError) and exc.code.startswith("28"):
            # Wrong credentials will not fix themselves: fail the waiters now.
            self._fatal = exc
            self._fatal_at = asyncio.get_running_loop().time()
            for client in list(self.waiters):
                self.waiters.remove(client)
                client.borrow_failed(exc.code, f"proxy cannot log in to the server: {exc}")
            return
        if self.waiters and not self.paused:
            delay = policy.retry_delay(self._attempt, self._rand.random())
            self._attempt += 1
            asyncio.get_running_loop().call_later(delay, self._grow)

    async def server_params(self, timeout: float) -> dict[str, str]:
        """The server's ParameterStatus set (opens a first connection if needed).

        Polls while the first connection is being opened (this only happens until
        one login succeeds); a refused login (wrong credentials) fails at once.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.cfg.server_connect_timeout)
        while self.params is None:
            fatal = self._fatal
            if fatal is not None and loop.time() - self._fatal_at < 1.0:
                raise fatal
            if self.connecting == 0 and not self.servers and not self.paused:
                self._fatal = None
                self.connecting += 1
                self._spawn(self._open_one())
            if loop.time() >= deadline:
                raise ServerLoginError(
                    f"cannot reach the server: {self.last_error or 'timed out'}",
                    self.last_error_code,
                )
            await asyncio.sleep(0.02)
        return self.params

    # -- maintenance -----------------------------------------------------------------

    def maintain(self, now: float) -> None:
        infos = [
            policy.IdleInfo(s.created, s.idle_since, s.expires, s.last_checked) for s in self.idle
        ]
        # idle is LIFO (most recently used at the end), so index 0 is the oldest.
        close, check, to_open = policy.plan_idle(
            infos,
            now,
            total=len(self.servers) + self.connecting,
            min_idle=self.cfg.min_idle,
            idle_timeout=self.cfg.idle_timeout,
            max_size=self.max_size,
            health_check_interval=self.cfg.health_check_interval,
        )
        doomed = [self.idle[i] for i in close]
        checked = [self.idle[i] for i in check]
        for server in doomed:
            self.idle.remove(server)
            server.close("idle_timeout" if now < server.expires else "max_lifetime")
        for server in checked:
            self.idle.remove(server)
            server.health_check()
        if not self.paused and not self.proxy.draining:
            for _ in range(to_open):
                self.connecting += 1
                self._spawn(self._open_one())

    def close_all(self, reason: str) -> None:
        for server in list(self.servers):
            server.close(reason)
        self.idle.clear()

    def reconnect_idle(self) -> None:
        """Close idle connections so new ones pick up new settings (RELOAD)."""
        for server in list(self.idle):
            server.close("reload")
        self.idle.clear()
