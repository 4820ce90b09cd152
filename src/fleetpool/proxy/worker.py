# Strategy: the composition root. ``Proxy`` builds what one worker process runs -- the
# wire-protocol plug-in, the client registry, the server pool, the optional budget
# leases and failover driver, the admin console and HTTP endpoint, the sibling-worker
# channel -- and hands each part the few collaborators it uses. No part holds a
# reference back to the Proxy; the hot path never goes through it.
#
# It also implements the console's Control: an admin command runs on this worker and,
# with several workers, on every sibling before it is answered.
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
from collections.abc import Coroutine
from typing import Any

from ..errors import BudgetNotConfigured, ConfigError, FleetpoolError, UnavailableError
from ..tls import certificate_hash, server_context
from .config import RESTART_SETTINGS, ProxyConfig, listen_error, settings_from_env
from .console import Console
from .context import ServerConn
from .emf import EmfWriter
from .inspect import Inspector
from .leases import LeaseManager
from .mysql import MySQLEngine
from .pg import PostgresEngine
from .pgbouncer import load_any
from .policy import effective_pool_size, split_pool_size
from .pool import Pool
from .registry import Registry
from .router import Router
from .services import Lifecycle, Services, Users
from .stats import Stats
from .throttle import LoginThrottle, ThrottleRules
from .workers import Channel

log = logging.getLogger("fleetpool.proxy")

_WAIT_LIMIT = 30.0  # PAUSE and WAIT_CLOSE give up after this long
_BUDGET_VIEW_EVERY = 2.0  # seconds between budget snapshots for /status and /metrics


async def _check_budget(budget: Any) -> None:
    """Refuse to start on a budget nobody configured (every connect would be refused)."""
    try:
        configured = (await budget.config()).configured
    except UnavailableError as exc:
        log.warning("budget %r cannot be checked now: %s", budget.name, exc)
        return
    if not configured:
        raise BudgetNotConfigured(budget.name, budget.backend.store)


class Proxy:
    def __init__(
        self,
        cfg: ProxyConfig,
        worker_index: int = 0,
        workers: int = 1,
        config_path: str | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.overrides = dict(overrides or {})
        self.worker_index = worker_index
        self.workers = workers
        self.port = cfg.listen[1]
        self.stats = Stats()
        self.lifecycle = Lifecycle()
        self.engine: Any = (
            MySQLEngine(cfg, self.stats)
            if cfg.upstream.engine == "mysql"
            else PostgresEngine(cfg, self.stats)
        )
        self.registry = Registry(worker_index, workers, forward=self._forward_cancel)
        self.users = Users(cfg.user_secrets(), cfg.token_secrets())
        self.router = Router(
            cfg,
            split_pool_size(cfg.pool_size, workers, worker_index),
            self.engine.connector,
            self.stats,
            lambda: self.users.secrets,
            self.engine.probe,
            self.engine.default_variant,
        )
        self.inspector = Inspector(
            cfg,
            self.router,
            self.registry,
            self.stats,
            self.lifecycle,
            port=lambda: self.port,
            engine=self.engine.name,
        )
        client_tls: ssl.SSLContext | None = None
        binding: bytes | None = None
        if cfg.tls_cert and cfg.tls_key and cfg.client_tls != "disable":
            client_tls = server_context(cfg.tls_cert, cfg.tls_key, cfg.client_ca_file)
            binding = certificate_hash(cfg.tls_cert)
        self.services = Services(
            cfg=cfg,
            router=self.router,
            registry=self.registry,
            stats=self.stats,
            spawn=self.spawn,
            users=self.users,
            console=Console(self.inspector, self),
            lifecycle=self.lifecycle,
            client_tls=client_tls,
            channel_binding=binding,
            throttle=LoginThrottle(ThrottleRules.from_config(cfg), self.stats),
        )
        self.leases: LeaseManager | None = None
        self.channel: Channel | None = None
        self.admin: Any = None
        self.data_api: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.base_events.Server | None = None
        self._janitor: asyncio.Task[None] | None = None
        self._budget_view_due = 0.0
        self.emf: EmfWriter | None = None
        if cfg.emf_interval > 0 and worker_index == 0:
            self.emf = EmfWriter(cfg.name, cfg.emf_interval)

    def __repr__(self) -> str:
        return (
            f"<Proxy {self.cfg.listen[0]}:{self.port} clients={len(self.registry)} {self.pool!r}>"
        )

    @property
    def clients(self) -> set[Any]:
        return self.registry.clients

    @property
    def pool(self) -> Pool:
        """The pool of the upstream's own database and user (the only one unless clients
        log in to other databases or as other users)."""
        return self.router.default

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Listen and start every part; on any failure, undo what was started."""
        budget = None
        try:
            if self.cfg.budget_url:
                from ..budget import open_async_budget

                budget = open_async_budget(self.cfg.budget_url, self.cfg.budget_name)
                await _check_budget(budget)
            await self._start(budget)
        except BaseException:
            await self._undo_start(budget)
            raise

    async def _start(self, budget: Any) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        host, port = cfg.listen
        if cfg.max_connections_percent is not None:
            await self._size_from_server()
        prepare = getattr(self.engine, "prepare", None)
        if prepare is not None:
            await prepare(self.router.default)
        try:
            self._server = await loop.create_server(
                self.engine.frontend(self.services),
                host,
                port,
                reuse_port=self.workers > 1 or None,
                backlog=4096,
            )
        except OSError as exc:
            raise listen_error("listen", host, port, exc) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        if self.workers > 1:
            self.channel = Channel(
                self.port, self.worker_index, self.workers, self.registry.cancel, self._local
            )
            await self.channel.start()
        if budget is not None:
            self.leases = LeaseManager(
                budget,
                ttl=cfg.budget_ttl,
                wait=cfg.budget_wait,
                spawn=self.spawn,
                meta={"proxy_port": self.port},
            )
            self.router.set_leases(self.leases)
        if cfg.admin_listen and self.worker_index == 0:
            from .admin import AdminHTTP

            admin = AdminHTTP(self.inspector, cfg.admin_listen, cfg.effective_admin_token())
            await admin.start()
            self.admin = admin
        if cfg.data_api_listen and self.worker_index == 0:
            # It logs in to this proxy as a client: it shares the pools, queue, leases.
            from ..dataapi.embedded import config_for_proxy, start_in_proxy

            self.data_api = await start_in_proxy(
                cfg, self.port, config_for_proxy(cfg, cfg.data_api_listen, cfg.data_api)
            )
        self._janitor = asyncio.ensure_future(self._janitor_loop())
        self.router.start()
        log.info(
            "proxy listening on %s:%s -> %s (%s mode, pool %d)",
            host,
            self.port,
            cfg.upstream,
            cfg.mode,
            self.pool.max_size,
        )

    async def _undo_start(self, budget: Any) -> None:
        if self.admin is not None:
            await self.admin.stop()
            self.admin = None
        if self.channel is not None:
            await self.channel.stop()
            self.channel = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if budget is not None:
            with contextlib.suppress(FleetpoolError):
                await budget.close()

    async def _size_from_server(self) -> None:
        host, port = self.cfg.upstream.hosts[0]
        value = await self.engine.max_connections(host, port, self.cfg.server_connect_timeout)
        total = effective_pool_size(self.cfg.pool_size, self.cfg.max_connections_percent, value)
        self.router.set_limit(split_pool_size(total, self.workers, self.worker_index))

    async def serve_forever(self) -> None:
        assert self._server is not None
        try:
            await self._server.serve_forever()
        except asyncio.CancelledError:
            pass

    async def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, let attached clients finish their transaction, then close."""
        timeout = self.cfg.shutdown_timeout if timeout is None else timeout
        if self.data_api is not None:
            await self.data_api.stop(timeout)
        self.lifecycle.draining = True
        self.router.drain()
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for client in list(self.registry.clients):
                if client.server is None and not client.waiting:
                    client.fatal("57P01", "terminating connection: the proxy is shutting down")
            if not self.registry.clients:
                break
            await asyncio.sleep(0.05)
        for client in list(self.registry.clients):
            client.fatal("57P01", "terminating connection: the proxy is shutting down")
        self.router.close_all("shutdown")
        if self._janitor is not None:
            self._janitor.cancel()
        self.router.stop()
        if self.admin is not None:
            await self.admin.stop()
        if self.leases is not None:
            await self.leases.close(lambda: self.router.servers)
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        if self.channel is not None:
            await self.channel.stop()
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
        self.router.maintain(now)
        limit = self.cfg.client_idle_timeout
        if limit:
            for client in list(self.registry.clients):
                if (
                    client.server is None
                    and not client.waiting
                    and client.state == "ready"
                    and now - client.last_activity > limit
                ):
                    client.fatal(
                        "57P05", "terminating connection due to idle timeout (client_idle_timeout)"
                    )
        if self.leases is not None:
            self.leases.tick(self.router.servers, self._retire)
            if self.admin is not None and now >= self._budget_view_due:
                self._budget_view_due = now + _BUDGET_VIEW_EVERY
                self.spawn(self._refresh_budget_view(self.leases))
        emf = self.emf
        if emf is not None and emf.due(now):
            try:
                emf.write(self.inspector.snapshot(), now)
            except (OSError, ValueError) as exc:  # stdout closed: the proxy goes on
                log.warning("cannot write EMF metrics: %s", exc)
        if self.workers > 1:
            try:
                self.inspector.publish()
            except OSError as exc:  # pragma: no cover - /tmp full or gone
                log.debug("cannot publish worker stats: %s", exc)

    async def _refresh_budget_view(self, leases: LeaseManager) -> None:
        try:
            snap = await leases.budget.snapshot()
        except FleetpoolError as exc:
            log.debug("budget snapshot for /status failed: %s", exc)
            return
        self.inspector.budget = snap.as_dict()

    def _retire(self, server: ServerConn) -> None:
        server.expires = 0.0  # closed at its next release
        owner = server.owner
        if isinstance(owner, Pool) and server in owner.idle:
            owner.idle.remove(server)
            server.close("budget lease lost")

    def _forward_cancel(self, worker: int, pid: int, key: int) -> None:
        if self.channel is not None:
            self.channel.forward_cancel(worker, pid, key)

    # -- Control (admin commands, on every worker) ----------------------------------

    async def _local(self, command: str) -> str:
        router = self.router
        if command == "PAUSE":
            router.pause()
            deadline = time.monotonic() + _WAIT_LIMIT
            while not router.quiet and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            return "ok" if router.quiet else "error: timed out"
        if command == "RESUME":
            router.resume()
            return "ok"
        if command == "RECONNECT":
            self.engine.forget_reported(router)
            router.reconnect()
            return "ok"
        if command == "WAIT_CLOSE":
            deadline = time.monotonic() + _WAIT_LIMIT
            while router.retiring and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return "ok" if not router.retiring else "error: timed out"
        if command == "RELOAD":
            try:
                return self.reload_local()
            except FleetpoolError as exc:
                return f"error: {exc}"
        return f"error: unknown command {command}"

    async def _everywhere(self, command: str) -> list[str]:
        answers = [await self._local(command)]
        if self.channel is not None:
            answers += await self.channel.broadcast(command, _WAIT_LIMIT + 5)
        return answers

    async def pause(self) -> bool:
        return all(a == "ok" for a in await self._everywhere("PAUSE"))

    async def resume(self) -> None:
        await self._everywhere("RESUME")

    async def reconnect(self) -> None:
        await self._everywhere("RECONNECT")

    async def wait_close(self) -> bool:
        return all(a == "ok" for a in await self._everywhere("WAIT_CLOSE"))

    async def reload(self) -> str:
        answers = await self._everywhere("RELOAD")
        failed = [a for a in answers if a != "RELOAD"]
        if failed:
            raise ConfigError("; ".join(failed))
        return "RELOAD"

    def reload_local(self) -> str:
        """Re-read the config file (if any; TOML or pgbouncer.ini) and apply what can
        change live.

        Listen address, mode, workers, client TLS files and the admin HTTP endpoint need
        a restart; everything else
        (pool size and timeouts, users, auth, init/reset queries, upstream) applies to
        new connections at once. Server connections are retired and reopened.
        """
        if self.config_path:
            # The environment is read again too: a *_FILE secret may have been rotated.
            new = load_any(self.config_path, **{**settings_from_env(), **self.overrides})
            fixed = RESTART_SETTINGS
            for name in fixed:
                if getattr(new, name) != getattr(self.cfg, name):
                    log.warning("RELOAD: %s changed; restart the proxy to apply it", name)
            for f in dataclasses.fields(ProxyConfig):
                if f.name not in fixed:
                    setattr(self.cfg, f.name, getattr(new, f.name))
            self.users.secrets = self.cfg.user_secrets()
            self.users.token_secret = self.cfg.token_secrets()
            self.services.throttle.rules = ThrottleRules.from_config(self.cfg)
            self.router.set_limit(
                split_pool_size(self.cfg.pool_size, self.workers, self.worker_index)
            )
            for pool in self.router:
                pool.max_prepared = self.cfg.max_prepared_statements
                if pool.failover is None and pool is self.router.default:
                    pool.primary = self.cfg.upstream.hosts[0]
            logging.getLogger("fleetpool").setLevel(self.cfg.log_level.upper())
        self.engine.forget_reported(self.router)
        self.router.reconnect()
        log.info(
            "configuration reloaded%s", f" from {self.config_path}" if self.config_path else ""
        )
        return "RELOAD"
