# Strategy: ``Proxy`` owns everything one worker process runs -- the listening
# socket, the registry of clients and their cancel keys, the server pool, the
# janitor that applies pool policy once a second, the optional admin HTTP endpoint
# and the optional budget leases. Connections are asyncio Protocols created by the
# loop; the Proxy only wires them together, so the hot path never goes through it.
#
# Cancel keys: the BackendKeyData a client receives is the proxy's own. The process
# id half carries the worker index in its top bits, so with several workers on one
# SO_REUSEPORT port a CancelRequest that lands on the wrong worker is forwarded over
# a per-worker Unix socket to the worker that owns the client.
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import ssl
import struct
import tempfile
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..pg.auth import ScramVerifier
from ..pg.codec import CancelRequest
from .client import ClientConnection
from .config import ProxyConfig, load_config
from .policy import effective_pool_size, split_pool_size
from .pool import Pool
from .stats import Stats

if TYPE_CHECKING:
    from .failover import Failover
    from .server import ServerConnection

log = logging.getLogger("fleetpool.proxy")

_WORKER_SHIFT = 22
_MAX_WORKERS = 1 << (31 - _WORKER_SHIFT)


def cancel_socket_path(port: int, worker: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"fleetpool-{port}-w{worker}.sock")


class Proxy:
    def __init__(
        self,
        cfg: ProxyConfig,
        worker_index: int = 0,
        workers: int = 1,
        config_path: str | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        if workers > _MAX_WORKERS:
            raise ValueError(f"at most {_MAX_WORKERS} workers")
        self.cfg = cfg
        self.config_path = config_path
        self.overrides = dict(overrides or {})
        self.worker_index = worker_index
        self.workers = workers
        self.stats = Stats()
        self.clients: set[ClientConnection] = set()
        self.cancel_keys: dict[tuple[int, int], ClientConnection] = {}
        self.draining = False
        self.started = time.time()
        self.user_secrets = cfg.user_secrets()
        if not cfg.token_secret:
            cfg.token_secret = cfg.effective_token_secret()
        self._verifiers: dict[tuple[str, str], ScramVerifier] = {}
        self._pid_counter = 0
        self._param_keys: dict[tuple[tuple[str, str], ...], object] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.base_events.Server | None = None
        self._cancel_server: asyncio.base_events.Server | None = None
        self._janitor: asyncio.Task[None] | None = None
        self.admin: Any = None
        self.budget: Any = None
        self.client_ssl_context: ssl.SSLContext | None = None
        if cfg.tls_cert and cfg.tls_key and cfg.client_tls != "disable":
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
            self.client_ssl_context = ctx
        size = split_pool_size(cfg.pool_size, workers, worker_index)
        self.pool = Pool(self, size)
        self.failover: Failover | None = None
        if len(cfg.upstream.hosts) > 1:
            from .failover import Failover

            self.failover = Failover(self)
        self.port = cfg.listen[1]

    def __repr__(self) -> str:
        return f"<Proxy {self.cfg.listen[0]}:{self.port} clients={len(self.clients)} {self.pool!r}>"

    @property
    def client_count(self) -> int:
        return len(self.clients)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.cfg.listen
        if self.cfg.max_connections_percent is not None:
            await self._size_from_server()
        self._server = await loop.create_server(
            lambda: ClientConnection(self),
            host,
            port,
            reuse_port=self.workers > 1 or None,
            backlog=4096,
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        if self.workers > 1:
            path = cancel_socket_path(self.port, self.worker_index)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            self._cancel_server = await loop.create_unix_server(lambda: _CancelForward(self), path)
        if self.cfg.budget_url:
            from .leases import open_budget

            self.budget = await open_budget(self)
        if self.cfg.admin_listen and self.worker_index == 0:
            from .admin import AdminHTTP

            self.admin = AdminHTTP(self)
            await self.admin.start()
        self._janitor = asyncio.ensure_future(self._janitor_loop())
        if self.failover is not None:
            self.failover.start()
        log.info(
            "proxy listening on %s:%s -> %s (%s mode, pool %d)",
            host,
            self.port,
            self.cfg.upstream,
            self.cfg.mode,
            self.pool.max_size,
        )

    async def _size_from_server(self) -> None:
        try:
            server = await self.pool.open_connection()
        except Exception as exc:
            log.warning("cannot read max_connections (%s); using pool_size", exc)
            return
        value = server.startup_params.get("max_connections")
        server.close("sizing probe")
        if value is None:
            value = await _show_max_connections(self)
        total = effective_pool_size(
            self.cfg.pool_size, self.cfg.max_connections_percent, int(value) if value else None
        )
        self.pool.max_size = split_pool_size(total, self.workers, self.worker_index)

    async def serve_forever(self) -> None:
        assert self._server is not None
        try:
            await self._server.serve_forever()
        except asyncio.CancelledError:
            pass

    async def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, let attached clients finish their transaction, then close."""
        timeout = self.cfg.shutdown_timeout if timeout is None else timeout
        self.draining = True
        if self._server is not None:
            self._server.close()
        if self._cancel_server is not None:
            self._cancel_server.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for client in list(self.clients):
                if client.server is None and not client.waiting:
                    client.fatal("57P01", "terminating connection: the proxy is shutting down")
            if not self.clients:
                break
            await asyncio.sleep(0.05)
        for client in list(self.clients):
            client.fatal("57P01", "terminating connection: the proxy is shutting down")
        self.pool.close_all("shutdown")
        if self._janitor is not None:
            self._janitor.cancel()
        if self.failover is not None:
            self.failover.stop()
        if self.admin is not None:
            await self.admin.stop()
        if self.budget is not None:
            await self.budget.close()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        if self.workers > 1:
            from .admin import worker_file

            for path in (
                worker_file(self, self.worker_index),
                cancel_socket_path(self.port, self.worker_index),
            ):
                try:
                    os.unlink(path)
                except OSError:
                    pass
        await asyncio.sleep(0)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def _janitor_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self.tick(time.monotonic())
            except Exception:  # pragma: no cover - keep the janitor alive
                log.exception("janitor tick failed")

    def tick(self, now: float) -> None:
        self.pool.maintain(now)
        limit = self.cfg.client_idle_timeout
        if limit:
            for client in list(self.clients):
                if (
                    client.server is None
                    and not client.waiting
                    and client.state == "ready"
                    and now - client.last_activity > limit
                ):
                    client.fatal(
                        "57P05", "terminating connection due to idle timeout (client_idle_timeout)"
                    )
        if self.budget is not None:
            self.budget.tick(now)
        if self.workers > 1:
            from .admin import publish

            try:
                publish(self)
            except OSError as exc:  # pragma: no cover - /tmp full or gone
                log.debug("cannot publish worker stats: %s", exc)

    def reload(self) -> str:
        """Re-read the config file (if any) and apply what can change live.

        Listen address, mode, workers and TLS files need a restart; everything else
        (pool size and timeouts, users, auth, init/reset queries, upstream) applies to
        new connections at once. Idle server connections are reopened.
        """
        if self.config_path:
            new = load_config(self.config_path, **self.overrides)
            fixed = ("listen", "mode", "workers", "tls_cert", "tls_key", "client_tls")
            for name in fixed:
                if getattr(new, name) != getattr(self.cfg, name):
                    log.warning("RELOAD: %s changed; restart the proxy to apply it", name)
            for f in dataclasses.fields(ProxyConfig):
                if f.name not in fixed:
                    setattr(self.cfg, f.name, getattr(new, f.name))
            self.user_secrets = self.cfg.user_secrets()
            self.pool.max_size = split_pool_size(
                self.cfg.pool_size, self.workers, self.worker_index
            )
            if self.cfg.upstream.hosts[0] != self.pool.primary and self.failover is None:
                self.pool.primary = self.cfg.upstream.hosts[0]
            logging.getLogger("fleetpool").setLevel(self.cfg.log_level.upper())
        self.pool.reconnect_idle()
        log.info(
            "configuration reloaded%s", f" from {self.config_path}" if self.config_path else ""
        )
        return "RELOAD"

    # -- registry ----------------------------------------------------------------------

    def client_opened(self, client: ClientConnection) -> None:
        self.clients.add(client)
        self.stats.client_connections_total += 1

    def client_closed(self, client: ClientConnection) -> None:
        self.clients.discard(client)
        self.cancel_keys.pop((client.pid, client.key), None)

    def intern_params(self, params: dict[str, str]) -> object:
        """One shared key per distinct set of wanted parameters (identity compares)."""
        key = tuple(sorted(params.items()))
        return self._param_keys.setdefault(key, key)

    def new_cancel_key(self, client: ClientConnection) -> tuple[int, int]:
        self._pid_counter = (self._pid_counter + 1) & ((1 << _WORKER_SHIFT) - 1) or 1
        pid = (self.worker_index << _WORKER_SHIFT) | self._pid_counter
        key = secrets.randbits(32) - (1 << 31)
        self.cancel_keys[(pid, key)] = client
        return pid, key

    def cancel(self, pid: int, key: int) -> None:
        """Handle a CancelRequest carrying one of our keys."""
        owner = pid >> _WORKER_SHIFT
        if self.workers > 1 and owner != self.worker_index and 0 <= owner < self.workers:
            self.spawn(self._forward_cancel(owner, pid, key))
            return
        client = self.cancel_keys.get((pid, key))
        if client is None:
            return
        self.stats.cancels += 1
        server = client.server
        if server is not None and server.pid:
            self.spawn(_send_cancel(server.host, server.port, server.pid, server.key))
        elif client.waiting:
            self.pool.cancel_wait(client)
            client.borrow_failed("57014", "canceling statement due to user request")

    async def _forward_cancel(self, worker: int, pid: int, key: int) -> None:
        path = cancel_socket_path(self.port, worker)
        try:
            _r, writer = await asyncio.open_unix_connection(path)
            writer.write(CancelRequest(pid, key).encode())
            await writer.drain()
            writer.close()
        except OSError as exc:
            log.warning("cannot forward cancel request to worker %d: %s", worker, exc)

    # -- auth helpers ------------------------------------------------------------------

    def verifier(self, user: str, secret: str) -> ScramVerifier:
        cached = self._verifiers.get((user, secret))
        if cached is None:
            if secret.startswith("SCRAM-SHA-256$"):
                cached = ScramVerifier.parse(secret)
            else:
                cached = ScramVerifier.from_password(secret)
            self._verifiers[(user, secret)] = cached
        return cached

    # -- budget leases (see leases.py) --------------------------------------------------

    def release_lease(self, server: ServerConnection) -> None:
        if self.budget is not None and server.lease is not None:
            lease, server.lease = server.lease, None
            self.budget.release(lease)


class _CancelForward(asyncio.Protocol):
    """Receives CancelRequests forwarded by sibling workers."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) >= 16:
            _len, _code, pid, key = struct.unpack("!iiii", self.buf[:16])
            self.proxy.cancel(pid, key)


async def _send_cancel(host: str, port: int, pid: int, key: int) -> None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        writer.write(CancelRequest(pid, key).encode())
        await writer.drain()
        await asyncio.wait_for(reader.read(1), 5)
        writer.close()
    except (TimeoutError, OSError) as exc:
        log.warning("cancel request to %s:%s failed: %s", host, port, exc)


async def _show_max_connections(proxy: Proxy) -> str | None:
    import psycopg

    up = proxy.cfg.upstream
    host, port = proxy.pool.primary
    try:
        conn = await psycopg.AsyncConnection.connect(
            host=host,
            port=port,
            user=up.user,
            password=up.password,
            dbname=up.database,
            connect_timeout=5,
        )
        async with conn:
            cur = await conn.execute("SHOW max_connections")
            row = await cur.fetchone()
            return str(row[0]) if row else None
    except Exception as exc:
        log.warning("SHOW max_connections failed: %s", exc)
        return None
