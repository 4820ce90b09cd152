# Strategy: the proxy's HTTP endpoint: ``/metrics`` in Prometheus text format
# (prometheus-client, with a private registry and a collector reading the Inspector on
# scrape) and ``/status`` as JSON, both covering every worker. It is a tiny asyncio
# HTTP/1.0 server: two GET routes on the proxy's own loop need no framework.
# It listens on loopback unless configured otherwise; with ``admin_token`` every
# request must carry ``Authorization: Bearer <token>`` (compared in constant time).
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
from collections.abc import Iterator
from typing import Any

from .. import prometheus
from ..histogram import Histogram
from .inspect import Inspector
from .stats import LATENCY_BUCKETS

log = logging.getLogger("fleetpool.proxy.admin")


def metric_families(inspect: Inspector) -> Iterator[Any]:
    """What a scrape of /metrics shows: every worker's numbers (the Inspector merges)."""
    core = prometheus.families()
    snap = inspect.snapshot()
    for key, value in snap.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if key in ("worker", "pid"):
            continue
        name = "fleetpool_proxy_" + key
        if key.endswith("_total"):
            yield core.CounterMetricFamily(name[: -len("_total")], key.replace("_", " "), value)
        else:
            yield core.GaugeMetricFamily(name, key.replace("_", " "), value=value)
    pinned = core.GaugeMetricFamily(
        "fleetpool_proxy_client_connections_pinned_by_reason",
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
    for name, key in (
        ("fleetpool_proxy_borrow_latency_seconds", "borrow_latency"),
        ("fleetpool_proxy_transaction_latency_seconds", "transaction_latency"),
    ):
        hist = Histogram(LATENCY_BUCKETS)
        hist.merge_dict(snap["_hist"][key])
        family = core.HistogramMetricFamily(name, name.replace("_", " "), labels=[])
        prometheus.add_histogram(family, [], hist)
        yield family


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

    async def start(self) -> None:
        host, port = self.listen
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("admin HTTP on %s:%s (/metrics, /status)", host, self.port)
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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            line = head.split(b"\r\n", 1)[0].decode(errors="replace").split()
            path = line[1].split("?", 1)[0] if len(line) >= 2 else "/"
            if not authorized(head, self.token):
                writer.write(
                    b"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n"
                    b"Content-Type: text/plain\r\nContent-Length: 46\r\n\r\n"
                    b"send the header: Authorization: Bearer <token>"
                )
                await writer.drain()
                return
            if path == "/metrics":
                from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                body, ctype, status = generate_latest(self.registry), CONTENT_TYPE_LATEST, "200 OK"
            elif path == "/status":
                snap = self.inspect.snapshot()
                snap.pop("_hist", None)
                if self.inspect.workers_total > 1:
                    snap["per_worker"] = self.inspect.workers()
                body = json.dumps(snap, indent=2).encode()
                ctype, status = "application/json", "200 OK"
            else:
                body, ctype, status = (
                    b"not found: try /metrics or /status\n",
                    "text/plain",
                    "404 Not Found",
                )
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except Exception:  # answer 500 rather than drop the connection silently
            log.exception("admin HTTP request failed")
            writer.write(b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
        finally:
            writer.close()
