# Strategy: the proxy's HTTP endpoint, for operators and their tools:
#
# * ``/metrics``: Prometheus text (prometheus-client, a private registry, a collector
#   reading the Inspector on scrape). Connections are gauges with a ``state`` label
#   (per pool too), so a dashboard stacks them and a query sums them; latencies are
#   histograms, never pre-computed quantiles, so replicas and workers can be added up.
# * ``/status``: the same numbers as JSON, with the pools and the budget's leases.
# * ``/healthz`` (the process answers: liveness) and ``/ready`` (it can serve clients
#   now: not draining or paused, no pool failing to reach its server; 503 with the
#   reasons otherwise): what systemd, a load balancer or Kubernetes probe.
# * ``/dashboard``: one self-contained HTML page (proxy/dashboard.html, no external
#   asset) that polls ``/status`` and draws it.
#
# It is a tiny asyncio HTTP/1.0 server on the proxy's own loop: a few GET routes need
# no framework, and every request is bounded in size and time. It covers every worker.
#
# ``/healthz`` and ``/ready`` answer anyone (load balancers cannot send a token); with
# ``admin_token`` set, everything else needs ``Authorization: Bearer <token>`` (compared
# in constant time) and ``/ready`` leaves its reasons out for a caller without it. It
# listens on loopback unless configured otherwise.
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

from .. import metrics as budget_metrics
from .. import prometheus
from ..histogram import Histogram
from .config import listen_error
from .inspect import Inspector, client_states, server_states
from .stats import LATENCY_BUCKETS

log = logging.getLogger("fleetpool.proxy.admin")

_REQUEST_TIMEOUT = 10.0
_MAX_HEAD = 16 * 1024

# /status keys that are not numbers a Prometheus gauge or counter should carry: states
# have families of their own, and quantiles are computed from the histograms.
_NOT_EXPORTED = frozenset(
    {
        "worker",
        "pid",
        "client_connections",
        "client_connections_active",
        "client_connections_waiting",
        "client_connections_pinned",
        "database_connections",
        "database_connections_idle",
        "database_connections_borrowed",
        "database_connections_connecting",
        "borrow_latency_p99_seconds",
        "transaction_latency_p99_seconds",
    }
)


def metric_families(inspect: Inspector) -> Iterator[Any]:
    """What a scrape of /metrics shows: every worker's numbers (the Inspector merges)."""
    core = prometheus.families()
    snap = inspect.snapshot()
    info = core.InfoMetricFamily("fleetpool_proxy", "the proxy's engine, mode and version")
    info.add_metric([], {"engine": str(snap["engine"]), "mode": str(snap["mode"])})
    yield info
    clients = core.GaugeMetricFamily(
        "fleetpool_proxy_client_connections",
        "client connections by state (active: on a server connection; waiting: queued)",
        labels=["state"],
    )
    for state, n in client_states(snap).items():
        clients.add_metric([state], n)
    yield clients
    servers = core.GaugeMetricFamily(
        "fleetpool_proxy_database_connections",
        "server connections by state (active: lent to a client)",
        labels=["state"],
    )
    for state, n in server_states(snap).items():
        servers.add_metric([state], n)
    yield servers
    for key, value in snap.items():
        if key in _NOT_EXPORTED or not isinstance(value, int | float):
            continue
        name = "fleetpool_proxy_" + key
        if key.endswith("_total"):
            yield core.CounterMetricFamily(name[: -len("_total")], key.replace("_", " "), value)
        else:
            yield core.GaugeMetricFamily(name, key.replace("_", " "), value=float(value))
    pinned = core.GaugeMetricFamily(
        "fleetpool_proxy_client_connections_pinned",
        "clients pinned to a server connection now, by reason",
        labels=["reason"],
    )
    for reason, n in sorted(snap.get("pinned_by_reason", {}).items()):
        pinned.add_metric([reason], n)
    yield pinned
    pins = core.CounterMetricFamily(
        "fleetpool_proxy_pins", "clients pinned since start, by reason", labels=["reason"]
    )
    for reason, n in sorted(snap.get("pins_by_reason", {}).items()):
        pins.add_metric([reason], n)
    yield pins
    yield from _pool_families(core, inspect.pools())
    for name, key, what in (
        (
            "fleetpool_proxy_borrow_latency_seconds",
            "borrow_latency",
            "wait for a server connection",
        ),
        ("fleetpool_proxy_transaction_latency_seconds", "transaction_latency", "transaction time"),
    ):
        hist = Histogram(LATENCY_BUCKETS)
        hist.merge_dict(snap["_hist"][key])
        family = core.HistogramMetricFamily(name, what, labels=[])
        prometheus.add_histogram(family, [], hist)
        yield family
    budget = inspect.budget
    if budget is not None:
        leases = core.GaugeMetricFamily(
            "fleetpool_proxy_budget_leases",
            "live leases of the proxy's budget, fleet-wide, by function",
            labels=["budget", "function"],
        )
        for function, n in sorted(budget.get("functions", {}).items()):
            leases.add_metric([str(budget["budget"]), function], n)
        yield leases


def _pool_families(core: Any, pools: list[dict[str, Any]]) -> Iterator[Any]:
    clients = core.GaugeMetricFamily(
        "fleetpool_proxy_pool_client_connections",
        "client connections of each pool by state",
        labels=["database", "user", "state"],
    )
    servers = core.GaugeMetricFamily(
        "fleetpool_proxy_pool_database_connections",
        "server connections of each pool by state",
        labels=["database", "user", "state"],
    )
    wait = core.GaugeMetricFamily(
        "fleetpool_proxy_pool_max_wait_seconds",
        "how long the oldest waiting client of each pool has waited",
        labels=["database", "user"],
    )
    merged: dict[tuple[str, str], dict[str, float]] = {}
    for row in pools:  # one row per pool and worker: add the workers up
        key = (str(row["database"]), str(row["user"]))
        into = merged.setdefault(key, {})
        for col in ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_login"):
            into[col] = into.get(col, 0) + float(row.get(col) or 0)
        into["maxwait"] = max(into.get("maxwait", 0.0), float(row.get("wait_seconds") or 0))
    for (database, user), row in sorted(merged.items()):
        clients.add_metric([database, user, "active"], row["cl_active"])
        clients.add_metric([database, user, "waiting"], row["cl_waiting"])
        servers.add_metric([database, user, "active"], row["sv_active"])
        servers.add_metric([database, user, "idle"], row["sv_idle"])
        servers.add_metric([database, user, "connecting"], row["sv_login"])
        wait.add_metric([database, user], row["maxwait"])
    yield clients
    yield servers
    yield wait


def readiness(inspect: Inspector) -> list[str]:
    """Why the proxy cannot serve clients now (empty: it can)."""
    snap = inspect.local_snapshot()
    reasons = []
    if snap.get("draining"):
        reasons.append("draining: the proxy is shutting down")
    if snap.get("paused"):
        reasons.append("paused (RESUME on the admin console)")
    failing = [p for p in inspect.router if p.failing]
    for pool in failing[:5]:
        reasons.append(
            f"pool {pool.database}/{pool.user} cannot reach its server: {pool.last_error}"
        )
    return reasons


def status(inspect: Inspector) -> dict[str, Any]:
    """The JSON of /status (and what the dashboard draws)."""
    snap = inspect.snapshot()
    snap.pop("_hist", None)
    snap["clients_by_state"] = client_states(snap)
    snap["servers_by_state"] = server_states(snap)
    snap["pool_list"] = inspect.pools()
    snap["budget"] = inspect.budget
    if inspect.workers_total > 1:
        snap["per_worker"] = inspect.workers()
    return snap


def dashboard_html() -> bytes:
    return resources.files(__package__).joinpath("dashboard.html").read_bytes()


Route = Callable[[], tuple[str, str, bytes]]
#: Paths a probe may read without the admin token.
_OPEN_PATHS = ("/healthz", "/ready")


def authorized(head: bytes, token: str) -> bool:
    """Does the request ``head`` carry the bearer ``token`` (always, without one)?"""
    if not token:
        return True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"authorization":
            scheme, _, given = value.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                return hmac.compare_digest(given.strip(), token.encode())
    return False


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AdminHTTP:
    def __init__(self, inspect: Inspector, listen: tuple[str, int], token: str = "") -> None:
        from prometheus_client import CollectorRegistry

        self.inspect = inspect
        self.listen = listen
        self.token = token
        self._server: asyncio.base_events.Server | None = None
        self.port = 0
        self.registry = CollectorRegistry(auto_describe=False)
        prometheus.register("fleetpool-proxy", lambda: metric_families(inspect), self.registry)
        # The budget's own counters in this process (grants, waits, refusals).
        budget_metrics.register_prometheus(self.registry)
        self._dashboard: bytes | None = None
        self.routes: dict[str, Route] = {
            "/metrics": self._metrics,
            "/status": self._status,
            "/healthz": self._healthz,
            "/ready": self._ready,
            "/dashboard": self._dashboard_page,
            "/": self._index,
        }

    async def start(self) -> None:
        host, port = self.listen
        try:
            self._server = await asyncio.start_server(self._handle, host, port, limit=_MAX_HEAD)
        except OSError as exc:
            raise listen_error("admin_listen", host, port, exc) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        log.info(
            "admin HTTP on %s:%s (/metrics, /status, /healthz, /ready, /dashboard)",
            host,
            self.port,
        )
        if not self.token and not _loopback(host):
            log.warning(
                "admin HTTP listens on %s without admin_token: anyone who reaches it "
                "reads the proxy's status; set admin_token (or FLEETPOOL_ADMIN_TOKEN)",
                host,
            )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # -- routes --------------------------------------------------------------------------

    def _metrics(self) -> tuple[str, str, bytes]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)

    def _status(self) -> tuple[str, str, bytes]:
        return "200 OK", "application/json", json.dumps(status(self.inspect), indent=2).encode()

    def _healthz(self) -> tuple[str, str, bytes]:
        # The loop answered this request: the process is alive and not wedged.
        body = {"status": "ok", "uptime_seconds": self.inspect.local_snapshot()["uptime_seconds"]}
        return "200 OK", "application/json", json.dumps(body).encode()

    def _ready(self) -> tuple[str, str, bytes]:
        reasons = readiness(self.inspect)
        body = json.dumps({"ready": not reasons, "reasons": reasons}).encode()
        code = "200 OK" if not reasons else "503 Service Unavailable"
        return code, "application/json", body

    def _dashboard_page(self) -> tuple[str, str, bytes]:
        if self._dashboard is None:
            self._dashboard = dashboard_html()
        return "200 OK", "text/html; charset=utf-8", self._dashboard

    def _index(self) -> tuple[str, str, bytes]:
        paths = " ".join(p for p in self.routes if p != "/")
        return "200 OK", "text/plain", f"fleetpool proxy admin: {paths}\n".encode()

    # -- HTTP ----------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _REQUEST_TIMEOUT)
            line = head.split(b"\r\n", 1)[0].decode(errors="replace").split()
            method = line[0] if line else ""
            path = line[1].split("?", 1)[0] if len(line) >= 2 else "/"
            allowed = authorized(head, self.token)
            route = self.routes.get(path)
            if method not in ("GET", "HEAD"):
                status_, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif not allowed and path not in _OPEN_PATHS:
                status_, ctype = "401 Unauthorized\r\nWWW-Authenticate: Bearer", "text/plain"
                body = b"send the header: Authorization: Bearer <token>\n"
            elif route is None:
                known = ", ".join(p for p in self.routes if p != "/")
                status_, ctype = "404 Not Found", "text/plain"
                body = f"not found: try {known}\n".encode()
            elif path == "/ready" and not allowed:
                status_, ctype, body = route()
                body = json.dumps({"ready": status_.startswith("200")}).encode()
            else:
                status_, ctype, body = route()
            writer.write(
                f"HTTP/1.0 {status_}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                f"Connection: close\r\n\r\n".encode()
                + (body if method != "HEAD" else b"")
            )
            await asyncio.wait_for(writer.drain(), _REQUEST_TIMEOUT)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except Exception:  # answer 500 rather than drop the connection silently
            log.exception("admin HTTP request failed")
            writer.write(b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
        finally:
            writer.close()
