# Strategy: one pool per (database, server login), PgBouncer's model. A client's
# database and user pick its pool: a ``[databases]`` entry names where that database
# lives (and may force one server login for all its clients); without entries, every
# database name goes to the upstream's hosts as itself and each client logs in to the
# server as its own user -- so grants and current_database() follow the login, as
# they would directly. ``server_login = "upstream"`` makes every pool log in as the
# upstream URL's user instead (proxy users then only authenticate to the proxy).
# Pools are made on first use. They share one cap on server connections
# (``pool_size``, this worker's share): when it is reached, a pool that needs a
# connection closes the longest-idle connection of another pool, and a busy pool
# gives a returned connection up for another pool whose client waited longer
# (first come, first served across pools).
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import FleetpoolError
from .config import ProxyConfig, Upstream
from .context import Connector, Prober
from .failover import Failover
from .leases import LeaseManager
from .pool import Pool
from .stats import Stats

log = logging.getLogger("fleetpool.proxy.router")


class Refused(FleetpoolError):
    """A client's database/user has no pool: ``kind`` is ``database`` or ``credentials``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def unknown_database(name: str) -> Refused:
    """The refusal of a database the proxy does not serve (the server's own words)."""
    return Refused("database", f'database "{name}" does not exist')


class Router:
    def __init__(
        self,
        cfg: ProxyConfig,
        limit: int,
        connector: Callable[[Upstream, str], Connector],
        stats: Stats,
        secrets: Callable[[], dict[str, str]],
        probe: Prober | None = None,
        default_variant: str = "",
    ) -> None:
        self.cfg = cfg
        self.limit = limit
        self._connector = connector
        self.stats = stats
        self._secrets = secrets
        self._probe = probe
        # (database, server login, variant): a plug-in may keep clients that need
        # differently opened server connections apart (MySQL capability flags).
        self.pools: dict[tuple[str, str, str], Pool] = {}
        self.failovers: dict[tuple[tuple[str, int], ...], Failover] = {}
        self.leases: LeaseManager | None = None
        self.paused = False
        self.draining = False
        self.started = False
        up = cfg.upstream
        # Opened at start (min_idle, probes): with the variant most clients route to,
        # else its warm connections would serve nobody.
        self.default = self._make(up.database, up, cfg.pool_size, default_variant)

    def __iter__(self) -> Iterator[Pool]:
        return iter(list(self.pools.values()))

    # -- routing --------------------------------------------------------------------------

    def route(self, database: str, user: str, variant: str = "") -> Pool:
        """The pool for a client logged in to the proxy as ``user`` on ``database``
        (``variant``: what else its server connections must agree on)."""
        cfg = self.cfg
        entry = cfg.databases.get(database)
        if entry is None and cfg.databases and "*" in cfg.databases:
            entry = cfg.databases["*"]
        if entry is None and cfg.databases:
            raise unknown_database(database)
        if entry is not None and entry.forced_user:
            up = entry.upstream
            if database != up.database and entry is cfg.databases.get("*"):
                up = up.with_login(database, up.user, up.password)
            return self._pool(database, up, entry.pool_size, variant)
        base = entry.upstream if entry is not None else cfg.upstream
        size = entry.pool_size if entry is not None else None
        if cfg.server_login == "upstream" or user == base.user:
            up = (
                base
                if database == base.database
                else base.with_login(database, base.user, base.password)
            )
            return self._pool(database, up, size, variant)
        password = cfg.server_password(user, self._secrets())
        if password is None:
            raise Refused(
                "credentials",
                f'the proxy has no server password for user "{user}" (give it in users as a '
                f"password, or in server_users)",
            )
        return self._pool(database, base.with_login(database, user, password), size, variant)

    def _pool(self, database: str, up: Upstream, size: int | None, variant: str) -> Pool:
        pool = self.pools.get((database, up.user, variant))
        if pool is None:
            pool = self._make(database, up, size, variant)
        return pool

    def _make(self, database: str, up: Upstream, size: int | None, variant: str = "") -> Pool:
        hosts = tuple(up.hosts)
        failover = None
        if len(hosts) > 1 and self._probe is not None:
            failover = self.failovers.get(hosts)
            if failover is None:
                failover = self.failovers[hosts] = Failover(
                    list(hosts), self._probe, self._primary_changed(hosts),
                    self.cfg.health_check_interval,
                )  # fmt: skip
                if self.started:
                    failover.start()
        pool = Pool(
            self.cfg,
            min(size or self.limit, self.limit),
            self._connector(up, variant),
            self.stats,
            primary=up.hosts[0],
            leases=self.leases,
            failover=failover,
            capacity=self,
        )
        pool.database, pool.user, pool.upstream = database, up.user, up
        pool.paused = self.paused
        pool.draining = self.draining
        self.pools[(database, up.user, variant)] = pool
        log.info("pool for %s as %s -> %s (size %d)", database, up.user, up, pool.max_size)
        return pool

    def _primary_changed(self, hosts: tuple[tuple[str, int], ...]) -> Callable[[Any], None]:
        def changed(host: tuple[str, int]) -> None:
            for pool in self:
                if tuple(pool.upstream.hosts) == hosts:
                    pool.set_primary(host)

        return changed

    # -- the shared cap -------------------------------------------------------------------

    def room(self) -> int:
        """Server connections any pool may still open under the shared cap."""
        used = sum(len(p.servers) + p.connecting for p in self.pools.values())
        return self.limit - used

    def make_room(self, needy: Pool) -> bool:
        """Close the longest-idle connection of another pool so ``needy`` can open one."""
        oldest = None
        for pool in self.pools.values():
            if pool is not needy and pool.idle:
                candidate = pool.idle[0]
                if oldest is None or candidate.idle_since < oldest[1].idle_since:
                    oldest = (pool, candidate)
        if oldest is None:
            return False
        pool, server = oldest
        pool.idle.remove(server)
        server.close("room for another pool")
        return True

    def should_yield(self, pool: Pool) -> bool:
        """Should ``pool`` close a connection it just got back, for an older waiter
        of another pool? (Only when the shared cap is reached.)"""
        pools = self.pools
        if len(pools) < 2:
            return False
        mine = pool.waiters[0].wait_started if pool.waiters else float("inf")
        for p in pools.values():  # (a plain loop: this runs once per transaction)
            if p is not pool and p.waiters and p.waiters[0].wait_started < mine:
                return self.room() <= 0
        return False

    def freed(self) -> None:
        """A connection closed somewhere: pools with waiting clients may grow, the one
        whose oldest client waited longest first (first come, first served)."""
        waiting = [p for p in self.pools.values() if p.waiters]
        waiting.sort(key=lambda p: p.waiters[0].wait_started)
        for pool in waiting:
            pool.grow()

    # -- every pool -----------------------------------------------------------------------

    def set_leases(self, leases: LeaseManager | None) -> None:
        self.leases = leases
        for pool in self:
            pool.leases = leases

    def set_limit(self, limit: int) -> None:
        self.limit = limit
        for pool in self:
            pool.max_size = min(pool.max_size, limit) if pool is not self.default else limit

    @property
    def servers(self) -> set[Any]:
        return {s for pool in self for s in pool.servers}

    def pause(self) -> None:
        self.paused = True
        for pool in self:
            pool.pause()

    def resume(self) -> None:
        self.paused = False
        for pool in self:
            pool.resume()

    def drain(self) -> None:
        self.draining = True
        for pool in self:
            pool.draining = True

    def reconnect(self) -> None:
        for pool in self:
            pool.reconnect()

    @property
    def retiring(self) -> int:
        return sum(pool.retiring for pool in self)

    @property
    def quiet(self) -> bool:
        return all(pool.quiet for pool in self)

    def maintain(self, now: float) -> None:
        for pool in self:
            pool.maintain(now)

    def close_all(self, reason: str) -> None:
        for pool in self:
            pool.close_all(reason)

    def start(self) -> None:
        self.started = True
        for failover in self.failovers.values():
            failover.start()

    def stop(self) -> None:
        for failover in self.failovers.values():
            failover.stop()
