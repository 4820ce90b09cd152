# Strategy: one read-only view of a worker, built from the parts it is handed (pool,
# registry, stats, config), for the admin console, /status and /metrics. With several
# workers the view merges what the siblings published (workers.py): counters and gauges
# add up, latency quantiles are recomputed from the merged histograms, lists are
# concatenated with a worker column, and a per-worker breakdown is kept. A sibling's
# numbers are at most one janitor tick (1 s) old.
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ..histogram import Histogram
from . import workers as channel
from .config import ProxyConfig
from .registry import Registry
from .router import Router
from .services import Lifecycle
from .stats import LATENCY_BUCKETS, Stats

_LIST_LIMIT = 2000  # clients/servers a worker publishes for its siblings
_NOT_SUMMED = ("uptime_seconds", "max_wait_seconds", "worker", "pid")


class Inspector:
    def __init__(
        self,
        cfg: ProxyConfig,
        router: Router,
        registry: Registry,
        stats: Stats,
        lifecycle: Lifecycle,
        *,
        port: Callable[[], int],
        engine: str,
    ) -> None:
        self.cfg = cfg
        self.router = router
        self.registry = registry
        self.stats = stats
        self.lifecycle = lifecycle
        self._port = port
        self.engine = engine
        self.started = time.time()
        #: The budget's snapshot (fleet-wide leases by function), refreshed by the
        #: worker every few seconds when the proxy has a budget; None without one.
        self.budget: dict[str, Any] | None = None

    @property
    def worker(self) -> int:
        return self.registry.worker_index

    @property
    def workers_total(self) -> int:
        return self.registry.workers

    # -- this worker --------------------------------------------------------------------

    def local_snapshot(self) -> dict[str, Any]:
        router = self.router
        pools = list(router)
        default = router.default
        clients = list(self.registry.clients)
        st = self.stats
        now = time.monotonic()
        up = self.cfg.upstream
        waiters = [c for p in pools for c in p.waiters]
        return {
            "engine": self.engine,
            "listen": f"{self.cfg.listen[0]}:{self._port()}",
            "upstream": str(up),
            "database": up.database,
            "user": up.user,
            "primary": f"{default.primary[0]}:{default.primary[1]}",
            "mode": self.cfg.mode,
            "worker": self.worker,
            "pid": os.getpid(),
            "paused": router.paused,
            "draining": self.lifecycle.draining,
            "uptime_seconds": round(time.time() - self.started, 3),
            "pools": len(pools),
            "client_connections": len(clients),
            "client_connections_active": sum(1 for c in clients if c.server is not None),
            "client_connections_waiting": len(waiters),
            "client_connections_pinned": sum(1 for c in clients if c.pinned),
            "database_connections": sum(len(p.servers) for p in pools),
            "database_connections_idle": sum(len(p.idle) for p in pools),
            "database_connections_borrowed": sum(p.active for p in pools),
            "database_connections_connecting": sum(p.connecting for p in pools),
            "database_connections_retiring": router.retiring,
            "max_database_connections": router.limit,
            "max_wait_seconds": round(max((now - c.wait_started for c in waiters), default=0.0), 3),
            "client_connections_total": self.registry.opened_total,
            "clients_refused_total": st.clients_refused,
            "auth_failures_total": st.auth_failures,
            "logins_in_progress": st.logins_in_progress,
            "logins_delayed_total": st.logins_delayed,
            "logins_refused_banned_total": st.logins_refused_banned,
            "logins_refused_busy_total": st.logins_refused_busy,
            "login_bans_total": st.login_bans,
            "protocol_errors_total": st.protocol_errors,
            "borrow_timeouts_total": st.borrow_timeouts,
            "database_connects_total": st.server_connects,
            "database_connect_errors_total": st.server_connect_errors,
            "database_errors_total": st.server_errors,
            "database_connections_lost_total": st.server_lost,
            "pinned_sessions_total": st.pinned_total,
            "borrows_total": st.borrows,
            "transactions_total": st.transactions,
            "cancel_requests_total": self.registry.cancels,
            "borrow_latency_p99_seconds": st.borrow_latency.quantile(0.99),
            "transaction_latency_p99_seconds": st.transaction_latency.quantile(0.99),
            "pins_by_reason": dict(st.pins),
            "pinned_by_reason": _count(c.pin_reason for c in clients if c.pinned),
            "last_error": next((p.last_error for p in pools if p.failing), default.last_error),
            "_hist": {
                "borrow_latency": st.borrow_latency.as_dict(),
                "transaction_latency": st.transaction_latency.as_dict(),
            },
        }

    def local_clients(self) -> list[dict[str, Any]]:
        out = []
        now = time.monotonic()
        wall = time.time()
        for c in sorted(self.registry.clients, key=lambda c: c.id):
            state = "active" if c.server is not None else ("waiting" if c.waiting else "idle")
            host, _, port = c.peer_addr.rpartition(":")
            waited = now - c.wait_started if c.waiting else 0.0
            out.append(
                {
                    "type": "C",
                    "id": c.id,
                    "worker": self.worker,
                    "user": c.user,
                    "database": c.database,
                    "addr": host or c.peer_addr,
                    "port": int(port) if port.isdigit() else None,
                    "state": state if c.state == "ready" else c.state,
                    "pinned": c.pinned,
                    "pin_reason": c.pin_reason,
                    "application_name": c.application_name,
                    "connect_time": wall_text(wall - (now - c.connected_at)),
                    "wait": int(waited),
                    "wait_us": int((waited - int(waited)) * 1e6),
                }
            )
        return out

    def local_pools(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        out = []
        for pool in self.router:
            clients = [c for c in self.registry.clients if c.pool is pool]
            waited = max((now - c.wait_started for c in pool.waiters), default=0.0)
            attached = sum(1 for s in pool.servers if s.owner is not None and s.owner is not pool)
            out.append(
                {
                    "database": pool.database,
                    "user": pool.user,
                    "worker": self.worker,
                    "cl_active": sum(1 for c in clients if c.server is not None),
                    "cl_waiting": len(pool.waiters),
                    "cl_pinned": sum(1 for c in clients if c.pinned),
                    "sv_active": pool.active,
                    "sv_idle": len(pool.idle),
                    # neither idle nor lent out: doing the pool's own work (a reset, a check)
                    "sv_used": max(0, pool.active - attached),
                    "sv_login": pool.connecting,
                    "maxwait": int(waited),
                    "maxwait_us": int((waited - int(waited)) * 1e6),
                    "wait_seconds": round(waited, 3),
                    "pool_mode": self.cfg.mode,
                    "pool_size": pool.max_size,
                    "paused": pool.paused,
                    "xact_count": pool.xact_count,
                    "xact_time_us": int(pool.xact_time * 1e6),
                    "wait_time_us": int(pool.wait_time * 1e6),
                    "host": f"{pool.primary[0]}:{pool.primary[1]}",
                    "upstream_database": getattr(pool.upstream, "database", pool.database),
                }
            )
        return out

    def local_servers(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        out = []
        for pool, s in sorted(
            ((p, s) for p in self.router for s in p.servers), key=lambda ps: ps[1].id
        ):
            owner = s.owner
            attached = owner is not None and owner is not pool
            state = "active" if attached else ("idle" if s in pool.idle else "used")
            out.append(
                {
                    "id": s.id,
                    "worker": self.worker,
                    "database": pool.database,
                    "user": pool.user,
                    "type": "S",
                    "addr": s.host,
                    "port": s.port,
                    "remote_pid": s.pid,
                    "state": state,
                    "client": getattr(owner, "id", None) if attached else None,
                    "connect_time": wall_text(time.time() - (now - s.created)),
                    "age": round(now - s.created, 1),
                    "prepared": s.prepared_count,
                    "queries": s.queries,
                }
            )
        return out

    def publish(self) -> None:
        """Write this worker's view where its siblings can merge it (workers > 1)."""
        channel.publish(
            self._port(),
            self.worker,
            {
                "snapshot": self.local_snapshot(),
                "clients": self.local_clients()[:_LIST_LIMIT],
                "pools": self.local_pools()[:_LIST_LIMIT],
                "servers": self.local_servers()[:_LIST_LIMIT],
                "published": time.time(),
            },
        )

    def _siblings(self) -> list[dict[str, Any]]:
        out = []
        for index in range(self.workers_total):
            if index != self.worker:
                data = channel.read_published(self._port(), index)
                if data is not None:
                    out.append(data)
        return out

    # -- every worker ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """This worker's numbers, or with several workers the sum over all of them."""
        mine = self.local_snapshot()
        if self.workers_total <= 1:
            mine["workers_reporting"] = 1
            return mine
        merged = dict(mine)
        merged["worker"] = "all"
        merged["workers_reporting"] = 1
        hists = {k: Histogram(LATENCY_BUCKETS) for k in ("borrow_latency", "transaction_latency")}
        for key, h in hists.items():
            h.merge_dict(mine["_hist"][key])
        for data in self._siblings():
            other = data.get("snapshot", {})
            merged["workers_reporting"] += 1
            for key, value in other.items():
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                if key in _NOT_SUMMED or key.endswith("_p99_seconds"):
                    if key == "max_wait_seconds":
                        merged[key] = max(merged.get(key, 0.0), value)
                    continue
                merged[key] = merged.get(key, 0) + value
            for field in ("pins_by_reason", "pinned_by_reason"):
                for reason, n in other.get(field, {}).items():
                    merged[field][reason] = merged[field].get(reason, 0) + n
            for key, h in hists.items():
                h.merge_dict(other.get("_hist", {}).get(key))
        merged["_hist"] = {k: h.as_dict() for k, h in hists.items()}
        merged["borrow_latency_p99_seconds"] = hists["borrow_latency"].quantile(0.99)
        merged["transaction_latency_p99_seconds"] = hists["transaction_latency"].quantile(0.99)
        merged["pins_by_reason"] = dict(merged["pins_by_reason"])
        return merged

    def clients(self) -> list[dict[str, Any]]:
        rows = self.local_clients()
        for data in self._siblings():
            rows.extend(data.get("clients", []))
        return rows

    def pools(self) -> list[dict[str, Any]]:
        rows = self.local_pools()
        for data in self._siblings():
            rows.extend(data.get("pools", []))
        return rows

    def servers(self) -> list[dict[str, Any]]:
        rows = self.local_servers()
        for data in self._siblings():
            rows.extend(data.get("servers", []))
        return rows

    def workers(self) -> list[dict[str, Any]]:
        def row(snap: dict[str, Any], published: float | None) -> dict[str, Any]:
            return {
                "worker": snap.get("worker"),
                "pid": snap.get("pid"),
                "clients": snap.get("client_connections"),
                "servers": snap.get("database_connections"),
                "pinned": snap.get("client_connections_pinned"),
                "transactions": snap.get("transactions_total"),
                "updated_ago": 0.0 if published is None else round(time.time() - published, 1),
            }

        rows = [row(self.local_snapshot(), None)]
        for data in self._siblings():
            rows.append(row(data.get("snapshot", {}), data.get("published")))
        return sorted(rows, key=lambda r: int(r["worker"] or 0))

    def databases(self) -> list[dict[str, Any]]:
        """The databases clients may name: the ``[databases]`` entries (or, without
        them, every database a pool serves), with their server connections."""
        cfg = self.cfg
        pools = self.pools()
        names = list(cfg.databases) or [cfg.upstream.database]
        names += sorted({p["database"] for p in pools} - set(names) - {"*"})
        rows = []
        for name in names:
            route = cfg.databases.get(name) or cfg.databases.get("*")
            up = route.upstream if route is not None else cfg.upstream
            forced = (route is not None and route.forced_user) or cfg.server_login == "upstream"
            mine = [
                p
                for p in pools
                if p["database"] == name or (name == "*" and p["database"] not in cfg.databases)
            ]
            rows.append(
                {
                    "name": name,
                    "host": up.hosts[0][0],
                    "port": up.hosts[0][1],
                    "database": up.database if name == "*" or route is not None else name,
                    "force_user": up.user if forced else None,
                    "pool_size": (route.pool_size if route is not None else None)
                    or self.router.limit,
                    "pool_mode": cfg.mode,
                    "current_connections": sum(
                        p["sv_active"] + p["sv_idle"] + p["sv_login"] for p in mine
                    ),
                    "paused": int(self.router.paused),
                    "disabled": 0,
                }
            )
        return rows

    def users(self) -> list[dict[str, Any]]:
        return [
            {"name": name, "pool_mode": self.cfg.mode} for name in sorted(self.cfg.user_secrets())
        ]

    def config(self) -> dict[str, Any]:
        return self.cfg.shown()


def client_states(snap: dict[str, Any]) -> dict[str, int]:
    """Clients by state; the states add up to every client connection."""
    total = int(snap.get("client_connections", 0))
    active = int(snap.get("client_connections_active", 0))
    waiting = int(snap.get("client_connections_waiting", 0))
    return {"active": active, "waiting": waiting, "idle": max(0, total - active - waiting)}


def server_states(snap: dict[str, Any]) -> dict[str, int]:
    """Server connections by state (PgBouncer's sv_active, sv_idle, sv_login)."""
    return {
        "active": int(snap.get("database_connections_borrowed", 0)),
        "idle": int(snap.get("database_connections_idle", 0)),
        "connecting": int(snap.get("database_connections_connecting", 0)),
    }


def wall_text(epoch: float) -> str:
    """A time as PgBouncer's SHOW commands print it: ``2024-05-01 12:00:00 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out
