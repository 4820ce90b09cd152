# Strategy: CloudWatch gets the proxy's numbers the way it gets a Lambda function's: as
# Embedded Metric Format lines on stdout, which the awslogs driver (ECS, Fargate) or
# the CloudWatch agent turns into metrics with no API call and no credentials. Worker
# 0 writes one line every ``emf_interval`` seconds from the merged view of every
# worker: connections by state and the longest wait as they are now, and what the
# counters added since the previous line (a first line carries no deltas: nothing is
# invented). The dimension is ``Proxy`` = the ``name`` setting, so replicas of one
# proxy add up and separate proxies stay apart.
from __future__ import annotations

import time
from typing import Any, TextIO

from ..cloudwatch import emf_namespace, emf_record, write_emf
from .inspect import client_states, server_states

#: EMF metric name -> the /status counter whose increase it reports.
COUNTERS = {
    "Transactions": "transactions_total",
    "Borrows": "borrows_total",
    "BorrowTimeouts": "borrow_timeouts_total",
    "ClientConnectionsOpened": "client_connections_total",
    "ClientsRefused": "clients_refused_total",
    "AuthFailures": "auth_failures_total",
    "Pins": "pinned_sessions_total",
    "ServerConnectErrors": "database_connect_errors_total",
}
UNITS = {"MaxClientWait": "Milliseconds"}


def values(snap: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, float]:
    """The numbers of one EMF line; counters as increases since ``previous``."""
    out: dict[str, float] = {}
    for state, n in client_states(snap).items():
        out[f"ClientConnections{state.capitalize()}"] = n
    for state, n in server_states(snap).items():
        out[f"DatabaseConnections{state.capitalize()}"] = n
    out["PinnedClients"] = int(snap.get("client_connections_pinned", 0))
    out["MaxClientWait"] = round(float(snap.get("max_wait_seconds", 0.0)) * 1000, 3)
    if previous is not None:
        for metric, key in COUNTERS.items():
            now, before = snap.get(key), previous.get(key)
            if isinstance(now, int | float) and isinstance(before, int | float) and now >= before:
                out[metric] = now - before
    return out


class EmfWriter:
    """Writes the proxy's EMF line when its interval is due (driven by the janitor)."""

    def __init__(self, name: str, interval: float, stream: TextIO | None = None) -> None:
        self.name = name
        self.interval = interval
        self.namespace = emf_namespace(None)  # $FLEETPOOL_METRICS_NAMESPACE, else fleetpool
        self.stream = stream
        self._previous: dict[str, Any] | None = None
        self._due = 0.0

    def due(self, now: float) -> bool:
        return self.interval > 0 and now >= self._due

    def write(self, snap: dict[str, Any], now: float) -> dict[str, Any]:
        self._due = now + self.interval
        record = emf_record(
            self.namespace,
            int(time.time() * 1000),
            {"Proxy": self.name},
            values(snap, self._previous),
        )
        for metric in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            metric["Unit"] = UNITS.get(metric["Name"], "Count")
        self._previous = snap
        write_emf([record], self.stream)
        return record
