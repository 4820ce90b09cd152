# Strategy: two read-mostly views of one Proxy, built from the same snapshot.
# * The admin console: clients connect to the virtual database ``fleetpool`` and send
#   PgBouncer-style commands (SHOW POOLS/CLIENTS/SERVERS/STATS, PAUSE, RESUME,
#   RELOAD); answers are text-column result sets built with pg/messages.py.
# * An HTTP endpoint: ``/metrics`` in Prometheus text format (prometheus-client, with
#   a private registry and a custom collector reading Stats on scrape) and ``/status``
#   as JSON. It is a tiny asyncio HTTP/1.0 server: two GET routes need no framework.
from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import FleetpoolError
from ..pg import messages as m
from ..pg.codec import encode_message
from .stats import Histogram

if TYPE_CHECKING:
    from .proxy import Proxy

log = logging.getLogger("fleetpool.proxy.admin")


def _hist(h: Histogram) -> dict[str, Any]:
    return {"counts": list(h.counts), "sum": h.total, "n": h.n}


def worker_file(proxy: Proxy, index: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"fleetpool-{proxy.port}-w{index}.json")


def publish(proxy: Proxy) -> None:
    """Write this worker's snapshot where worker 0 can merge it (workers > 1)."""
    path = worker_file(proxy, proxy.worker_index)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(snapshot(proxy), fh)
    os.replace(tmp, path)


def merged_snapshot(proxy: Proxy) -> dict[str, Any]:
    """This worker's snapshot, or with several workers the sum over all of them.

    Counters and gauges add up; latency quantiles are recomputed from the merged
    histograms. Another worker's numbers are at most a janitor tick (1 s) old.
    """
    mine = snapshot(proxy)
    if proxy.workers <= 1:
        return mine
    merged = dict(mine)
    merged["worker"] = "all"
    merged["workers_reporting"] = 1
    hists = {k: Histogram() for k in ("borrow_latency", "transaction_latency")}
    for key, h in hists.items():
        _add_hist(h, mine["_hist"][key])
    for index in range(proxy.workers):
        if index == proxy.worker_index:
            continue
        try:
            with open(worker_file(proxy, index)) as fh:
                other = json.load(fh)
        except (OSError, ValueError):
            continue
        merged["workers_reporting"] += 1
        for key, value in other.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                if key.endswith("_seconds") or key == "worker":
                    continue
                merged[key] = merged.get(key, 0) + value
        for key, h in hists.items():
            _add_hist(h, other.get("_hist", {}).get(key))
    merged["_hist"] = {k: _hist(h) for k, h in hists.items()}
    merged["borrow_latency_p99_seconds"] = hists["borrow_latency"].quantile(0.99)
    merged["transaction_latency_p99_seconds"] = hists["transaction_latency"].quantile(0.99)
    return merged


def _add_hist(h: Histogram, data: dict[str, Any] | None) -> None:
    if not data or len(data.get("counts", [])) != len(h.counts):
        return
    h.counts = [a + b for a, b in zip(h.counts, data["counts"], strict=True)]
    h.total += data["sum"]
    h.n += data["n"]


def snapshot(proxy: Proxy) -> dict[str, Any]:
    pool = proxy.pool
    clients = list(proxy.clients)
    st = proxy.stats
    return {
        "listen": f"{proxy.cfg.listen[0]}:{proxy.port}",
        "upstream": str(proxy.cfg.upstream),
        "primary": f"{pool.primary[0]}:{pool.primary[1]}",
        "mode": proxy.cfg.mode,
        "worker": proxy.worker_index,
        "paused": pool.paused,
        "draining": proxy.draining,
        "uptime_seconds": round(time.time() - proxy.started, 3),
        "client_connections": len(clients),
        "client_connections_active": sum(1 for c in clients if c.server is not None),
        "client_connections_waiting": len(pool.waiters),
        "client_connections_pinned": sum(1 for c in clients if c.pinned),
        "database_connections": len(pool.servers),
        "database_connections_idle": len(pool.idle),
        "database_connections_borrowed": pool.active,
        "database_connections_connecting": pool.connecting,
        "max_database_connections": pool.max_size,
        "client_connections_total": st.client_connections_total,
        "clients_refused_total": st.clients_refused,
        "auth_failures_total": st.auth_failures,
        "protocol_errors_total": st.protocol_errors,
        "borrow_timeouts_total": st.borrow_timeouts,
        "database_connects_total": st.server_connects,
        "database_connect_errors_total": st.server_connect_errors,
        "database_errors_total": st.server_errors,
        "database_connections_lost_total": st.server_lost,
        "pinned_sessions_total": st.pinned_total,
        "borrows_total": st.borrows,
        "transactions_total": st.transactions,
        "cancel_requests_total": st.cancels,
        "borrow_latency_p99_seconds": st.borrow_latency.quantile(0.99),
        "transaction_latency_p99_seconds": st.transaction_latency.quantile(0.99),
        "last_error": pool.last_error,
        "_hist": {
            "borrow_latency": _hist(st.borrow_latency),
            "transaction_latency": _hist(st.transaction_latency),
        },
    }


# -- admin console --------------------------------------------------------------------


def _result(columns: list[str], rows: list[list[Any]], tag: str) -> bytes:
    parts = [m.row_description(columns)]
    for row in rows:
        parts.append(m.data_row([None if v is None else str(v) for v in row]))
    parts.append(m.command_complete(tag))
    return b"".join(parts)


def console_query(proxy: Proxy, sql: str) -> bytes:
    """Answer one admin-console query (result + ReadyForQuery)."""
    out = b""
    for stmt in [s.strip() for s in sql.split(";") if s.strip()]:
        out += _console_statement(proxy, stmt)
    if not out:
        out = encode_message(m.EMPTY_QUERY)
    return out + m.ready_for_query()


def _console_statement(proxy: Proxy, stmt: str) -> bytes:
    words = stmt.upper().split()
    now = time.monotonic()
    pool = proxy.pool
    if words[:1] == ["SHOW"] and len(words) == 2:
        what = words[1]
        if what == "POOLS":
            snap = snapshot(proxy)
            cols = [
                "database",
                "user",
                "cl_active",
                "cl_waiting",
                "cl_pinned",
                "sv_active",
                "sv_idle",
                "sv_connecting",
                "maxwait",
                "pool_mode",
                "pool_size",
            ]
            oldest = max((now - c.wait_started for c in pool.waiters), default=0.0)
            up = proxy.cfg.upstream
            row = [
                up.database,
                up.user,
                snap["client_connections_active"],
                snap["client_connections_waiting"],
                snap["client_connections_pinned"],
                snap["database_connections_borrowed"],
                snap["database_connections_idle"],
                snap["database_connections_connecting"],
                f"{oldest:.3f}",
                proxy.cfg.mode,
                pool.max_size,
            ]
            return _result(cols, [row], "SHOW")
        if what == "CLIENTS":
            cols = ["id", "user", "database", "addr", "state", "pinned", "pin_reason", "app"]
            rows = []
            for c in sorted(proxy.clients, key=lambda c: c.id):
                state = "active" if c.server else ("waiting" if c.waiting else "idle")
                rows.append(
                    [
                        c.id,
                        c.user,
                        c.database,
                        c.peer,
                        state,
                        c.pinned,
                        c.pin_reason,
                        c.application_name,
                    ]
                )
            return _result(cols, rows, "SHOW")
        if what == "SERVERS":
            cols = ["id", "addr", "pid", "state", "client", "age", "prepared", "queries"]
            rows = []
            for s in sorted(pool.servers, key=lambda s: s.id):
                state = "active" if s.client else ("idle" if s in pool.idle else "used")
                rows.append(
                    [
                        s.id,
                        f"{s.host}:{s.port}",
                        s.pid,
                        state,
                        s.client.id if s.client else None,
                        f"{now - s.created:.1f}",
                        len(s.prepared),
                        s.queries,
                    ]
                )
            return _result(cols, rows, "SHOW")
        if what == "STATS":
            snap = merged_snapshot(proxy)
            rows = [[k, v] for k, v in snap.items() if isinstance(v, int | float)]
            return _result(["stat", "value"], rows, "SHOW")
        if what in ("CONFIG", "VERSION"):
            if what == "VERSION":
                return _result(["version"], [["fleetpool proxy 0.1"]], "SHOW")
            rows = [
                [k, v]
                for k, v in sorted(vars_of(proxy.cfg).items())
                if k not in ("users", "token_secret", "upstream")
            ]
            return _result(["key", "value"], rows, "SHOW")
    if words == ["PAUSE"]:
        pool.paused = True
        return m.command_complete("PAUSE")
    if words == ["RESUME"]:
        pool.resume()
        return m.command_complete("RESUME")
    if words == ["RELOAD"]:
        try:
            return m.command_complete(proxy.reload())
        except FleetpoolError as exc:
            return m.error_response("F0000", f"RELOAD failed: {exc}")
    return m.error_response(
        "42601",
        f"unknown admin command: {stmt[:80]}",
        hint="try SHOW POOLS|CLIENTS|SERVERS|STATS|CONFIG, PAUSE, RESUME, RELOAD",
    )


def vars_of(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


# -- HTTP: /metrics and /status -------------------------------------------------------


class _Collector:
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        snap = merged_snapshot(self.proxy)
        for key, value in snap.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            name = "fleetpool_proxy_" + key
            if key.endswith("_total"):
                yield CounterMetricFamily(name[: -len("_total")], key.replace("_", " "), value)
            else:
                yield GaugeMetricFamily(name, key.replace("_", " "), value=value)
        for name, key in (
            ("fleetpool_proxy_borrow_latency_seconds", "borrow_latency"),
            ("fleetpool_proxy_transaction_latency_seconds", "transaction_latency"),
        ):
            hist = Histogram()
            _add_hist(hist, snap["_hist"][key])
            yield HistogramMetricFamily(
                name, name.replace("_", " "), buckets=hist.cumulative(), sum_value=hist.total
            )


class AdminHTTP:
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self._server: asyncio.base_events.Server | None = None
        self.port = 0
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(proxy))  # type: ignore[arg-type]

    async def start(self) -> None:
        assert self.proxy.cfg.admin_listen is not None
        host, port = self.proxy.cfg.admin_listen
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("admin HTTP on %s:%s (/metrics, /status)", host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            line = head.split(b"\r\n", 1)[0].decode(errors="replace").split()
            path = line[1].split("?", 1)[0] if len(line) >= 2 else "/"
            if path == "/metrics":
                from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                body, ctype, status = generate_latest(self.registry), CONTENT_TYPE_LATEST, "200 OK"
            elif path == "/status":
                snap = merged_snapshot(self.proxy)
                snap.pop("_hist", None)
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
