# Strategy: the pool hands server connections to clients first come, first served.
# ``checkout`` never blocks: it returns an idle connection at once (LIFO, so a few
# connections stay hot and the rest age out) or nothing, and the client then queues
# with ``enqueue``. A connection coming back goes straight to the oldest waiter. Opening
# connections is the only asynchronous work; it starts when a client waits and the pool
# has room, and is retried with backoff while clients still wait -- which is also what
# holds new transactions during a failover until a primary answers. What to do at each
# step (release, maintenance, wait expiry) is asked of the pure functions in policy.py.
#
# The pool is engine-neutral: connections come from an injected ``connect`` coroutine
# (the plug-in's), budget leases from an optional LeaseManager, the primary's address
# from an optional Failover. It is the owner of every connection it holds (see
# context.py) and hears ``server_idle``/``server_closed`` from them.
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any, Protocol

from ..errors import FleetpoolError, ServerLoginError
from . import policy
from .config import ProxyConfig
from .context import Cleanup, Connector, PoolClient, ServerConn
from .failover import Failover
from .leases import LeaseManager
from .stats import Stats

log = logging.getLogger("fleetpool.proxy.pool")
_IDLE = policy.Release.IDLE


class Capacity(Protocol):
    """A cap shared by several pools (the router)."""

    def room(self) -> int: ...

    def make_room(self, needy: Pool) -> bool: ...

    def freed(self) -> None: ...

    def should_yield(self, pool: Pool) -> bool: ...


class Pool:
    def __init__(
        self,
        cfg: ProxyConfig,
        max_size: int,
        connect: Connector,
        stats: Stats,
        *,
        primary: tuple[str, int],
        leases: LeaseManager | None = None,
        failover: Failover | None = None,
        capacity: Capacity | None = None,
    ) -> None:
        self.cfg = cfg
        self.max_size = max_size
        self._connect = connect
        self.stats = stats
        self.leases = leases
        self.failover = failover
        self.capacity = capacity
        self.primary = primary
        # Who the pool serves (set by the router) and what a plug-in keeps per pool.
        self.database = ""
        self.user = ""
        self.upstream: Any = None
        self.plugin: dict[str, Any] = {}
        self.idle: list[ServerConn] = []
        self.servers: set[ServerConn] = set()
        self.waiters: deque[PoolClient] = deque()
        self.connecting = 0
        self.last_error = ""
        self.last_error_code = ""
        self.failing = False  # the latest attempt to open a connection failed
        self.paused = False
        self.draining = False
        # Per-pool totals for SHOW STATS (the worker-wide ones are in ``stats``).
        self.xact_count = 0
        self.xact_time = 0.0
        self.wait_time = 0.0
        self.generation = 0  # bumped by RECONNECT/RELOAD: older connections retire
        self.max_prepared = cfg.max_prepared_statements
        self._attempt = 0
        self._expiry_handle: asyncio.TimerHandle | None = None
        self._fatal: ServerLoginError | None = None
        self._fatal_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._quiet: list[asyncio.Future[None]] = []
        self._rand = random.Random()

    def __repr__(self) -> str:
        return (
            f"<Pool [servers: {len(self.servers)} total, {len(self.idle)} idle, "
            f"{self.connecting} connecting | clients: {len(self.waiters)} waiting]>"
        )

    @property
    def active(self) -> int:
        return len(self.servers) - len(self.idle)

    # -- hand-out -------------------------------------------------------------------------

    def acquire(self, client: PoolClient) -> None:
        """Attach a server connection to ``client`` now, or queue it."""
        now = time.monotonic()
        server = self.checkout(now)
        if server is None:
            self.enqueue(client, now)
        else:
            client.attach(server, now)

    def checkout(self, now: float) -> Any:
        """An idle server connection, if there is one and nobody waits (hot path).

        The caller attaches it synchronously: no future, no task switch.
        """
        if self.waiters or self.paused:
            return None
        idle = self.idle
        while idle:
            server = idle.pop()
            if server.alive and now < server.expires:
                self.stats.borrowed_at_once()
                return server
            server.close("max_lifetime reached" if server.alive else "broken")
        return None

    def transaction_done(self, seconds: float) -> None:
        """A client's transaction (its time on a server connection) ended."""
        self.xact_count += 1
        self.xact_time += seconds
        self.stats.transaction_done(seconds)

    def enqueue(self, client: PoolClient, now: float) -> None:
        """Queue ``client`` (first come, first served) and open a connection if allowed."""
        # No timer per waiter: the queue is FCFS, so one periodic check of its head
        # finds every expired wait (see _expire_waiters).
        self.waiters.append(client)
        client.waiting = True
        client.wait_started = now
        if self._fatal is not None:
            if now - self._fatal_at < 1.0:
                self._fail_waiters(self._fatal)
                return
            self._fatal = None  # try again: the server or the settings may have changed
        if self._expiry_handle is None and self.cfg.connection_borrow_timeout:
            self._expiry_handle = asyncio.get_running_loop().call_later(
                min(0.1, self.cfg.connection_borrow_timeout), self._expire_waiters
            )
        if len(self.servers) + self.connecting < self.max_size:  # (a full pool is usual)
            self.grow()

    def _expire_waiters(self) -> None:
        """Fail the clients that waited longer than connection_borrow_timeout."""
        self._expiry_handle = None
        limit = self.cfg.connection_borrow_timeout
        now = time.monotonic()
        waiters = self.waiters
        while waiters and waiters[0].closed:
            waiters.popleft()
        expired = policy.waiters_expired([c.wait_started for c in waiters], now, limit)
        for _ in range(expired):
            client = waiters.popleft()
            if not client.closed:
                client.waiting = False
                self.stats.borrow_timeouts += 1
                msg = (
                    f"no server connection available within connection_borrow_timeout "
                    f"({limit:g}s); pool size {self.max_size}"
                )
                if self.failing:
                    msg += f"; last attempt to open one failed: {self.last_error}"
                client.borrow_failed("timeout", msg, self.last_error_code if self.failing else "")
        if waiters:
            self._expiry_handle = asyncio.get_running_loop().call_later(
                min(0.1, limit), self._expire_waiters
            )

    def cancel_wait(self, client: PoolClient) -> None:
        try:
            self.waiters.remove(client)
        except ValueError:
            pass
        client.waiting = False

    # -- return ---------------------------------------------------------------------------

    def release(self, server: ServerConn, now: float | None = None) -> None:
        """Take a server connection back (idle, or straight to the oldest waiter)."""
        if now is None:
            now = time.monotonic()
        server.owner = self
        waiters = self.waiters
        action = policy.plan_release(
            server.alive,
            server.busy,
            now,
            server.expires if server.generation == self.generation else now,
            self.draining,
            len(waiters),
            self.paused,
            server.prepared_count,
            self.max_prepared,
            self.capacity is not None and self.capacity.should_yield(self),
        )
        if action is _IDLE:
            server.idle_since = now
            self.idle.append(server)
            if self._quiet:
                self._check_quiet()
            return
        if action is policy.Release.HAND_OVER:
            while waiters:
                client = waiters.popleft()
                if client.closed:
                    continue
                client.waiting = False
                self.wait_time += now - client.wait_started
                self.stats.borrowed(now - client.wait_started)
                client.attach(server, now)
                return
            server.idle_since = now
            self.idle.append(server)
        elif action is policy.Release.STATEMENTS:
            server.cleanup(Cleanup.STATEMENTS, now)  # comes back through server_idle
        else:
            server.close(action.value)
            if action is policy.Release.EXPIRED:
                self.grow()

    def give_back(self, server: ServerConn, verdict: policy.GiveBack, reason: str = "") -> None:
        """A client is done with ``server`` (see policy.plan_give_back)."""
        server.owner = self
        now = time.monotonic()
        if verdict is policy.GiveBack.RELEASE:
            self.release(server, now)
        elif verdict is policy.GiveBack.ROLLBACK:
            server.cleanup(Cleanup.ROLLBACK, now)
        elif verdict is policy.GiveBack.RESET:
            server.cleanup(Cleanup.RESET, now)
        elif verdict is policy.GiveBack.CLOSE:
            server.close(reason)
        self._check_quiet()

    # ServerOwner: for connections the pool holds (idle, or doing the proxy's own work)
    def server_idle(self, server: ServerConn) -> None:
        self.release(server)

    def server_closed(self, server: ServerConn, reason: str) -> None:
        self.forget(server)

    def forget(self, server: ServerConn) -> None:
        """A server connection closed: drop it from every list."""
        self.servers.discard(server)
        try:
            self.idle.remove(server)
        except ValueError:
            pass
        if self.leases is not None:
            self.leases.release(server)
        if self.capacity is not None:
            self.capacity.freed()
        elif self.waiters:
            self.grow()
        self._check_quiet()

    # -- pause, reconnect --------------------------------------------------------------

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        while self.waiters and self.idle:
            self.release(self.idle.pop())
        self.grow()

    @property
    def quiet(self) -> bool:
        """No server connection is running or inside a transaction."""
        return not any(s.busy or getattr(s, "in_transaction", False) for s in self.servers)

    async def wait_quiet(self, timeout: float) -> bool:
        """Wait until :attr:`quiet` (PAUSE semantics); False on timeout."""
        if self.quiet:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._quiet.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if fut in self._quiet:
                self._quiet.remove(fut)

    def _check_quiet(self) -> None:
        if self._quiet and self.quiet:
            for fut in self._quiet:
                if not fut.done():
                    fut.set_result(None)
            self._quiet.clear()

    def reconnect(self) -> None:
        """Retire every connection: idle ones now, the others when they come back."""
        self.generation += 1
        for server in list(self.idle):
            server.close("reconnect")
        self.idle.clear()

    @property
    def retiring(self) -> int:
        """Connections opened before the latest reconnect that are still open."""
        return sum(1 for s in self.servers if s.generation < self.generation)

    def set_primary(self, host: tuple[str, int]) -> None:
        old, self.primary = self.primary, host
        if old != host:
            self.reconnect()

    # -- opening connections ---------------------------------------------------------

    def grow(self) -> None:
        if self.paused or self.draining:
            return
        needed = len(self.waiters) - self.connecting
        room = self.max_size - len(self.servers) - self.connecting
        if self.capacity is not None and needed > 0 and room > 0:
            shared = self.capacity.room()
            if shared <= 0 and self.capacity.make_room(self):
                return  # the closed connection frees room: freed() grows us again
            room = min(room, shared)
        for _ in range(min(needed, room)):
            self.connecting += 1  # counted now: the task starts later
            self._spawn(self._open_one())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open_one(self) -> None:
        # The caller has already counted this attempt in ``connecting``.
        server: Any = None
        lease = None
        try:
            if self.leases is not None:
                lease = await self.leases.acquire(self.primary)
            server = await self.open_connection()
        except (TimeoutError, OSError, FleetpoolError) as exc:
            if lease is not None and self.leases is not None:
                self.leases.release_lease(lease)
            self._failed(exc)
        finally:
            self.connecting -= 1
        if server is None:
            return
        self._attempt = 0
        self.failing = False
        self._fatal = None
        server.lease = lease
        if not server.alive:  # died between login and now
            if self.leases is not None:
                self.leases.release(server)
            return
        self.servers.add(server)
        server.generation = self.generation
        server.owner = self
        if self.cfg.init_query:
            server.cleanup(Cleanup.INIT, time.monotonic())  # comes back through server_idle
        else:
            self.release(server)

    async def open_connection(self) -> Any:
        """Connect and log in to the current primary (finding it first if needed)."""
        host, port = self.primary
        if self.failover is not None:
            host, port = await self.failover.current_primary()
        server = await self._connect(host, port, self.cfg.server_connect_timeout)
        self.stats.server_connects += 1
        server.expires = policy.lifetime_deadline(
            server.created, self.cfg.max_lifetime, self.cfg.lifetime_jitter, self._rand.random()
        )
        return server

    def _failed(self, exc: BaseException) -> None:
        self.last_error = str(exc) or type(exc).__name__
        self.failing = True
        code = getattr(exc, "code", "")
        self.last_error_code = code if isinstance(code, str) else ""
        self.stats.server_connect_errors += 1
        log.warning("cannot open server connection: %s", self.last_error)
        if self.failover is not None:
            self.failover.suspect()
        if isinstance(exc, ServerLoginError) and exc.permanent:
            # Wrong credentials or an unknown database will not fix themselves: fail the
            # waiters now (and new ones at once for a second).
            self._fatal = exc
            self._fatal_at = time.monotonic()
            self._fail_waiters(exc)
            return
        if self.waiters and not self.paused:
            delay = policy.retry_delay(self._attempt, self._rand.random())
            self._attempt += 1
            asyncio.get_running_loop().call_later(delay, self.grow)

    def _fail_waiters(self, exc: ServerLoginError) -> None:
        for client in list(self.waiters):
            self.waiters.remove(client)
            client.waiting = False
            if exc.auth:  # the proxy's own credentials: say whose problem it is
                client.borrow_failed("auth", f"proxy cannot log in to the server: {exc}", exc.code)
            else:  # e.g. no such database: the server's own refusal, whole
                client.borrow_failed("refused", exc.detail or str(exc), exc.code, exc.raw)

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
            server.cleanup(Cleanup.CHECK, now)
        if self.capacity is not None:
            to_open = min(to_open, max(0, self.capacity.room()))
        if not self.paused and not self.draining:
            for _ in range(to_open):
                self.connecting += 1
                self._spawn(self._open_one())

    def close_all(self, reason: str) -> None:
        for server in list(self.servers):
            server.close(reason)
        self.idle.clear()
