"""In-process metrics, exported to Prometheus and as CloudWatch Embedded Metric Format.

Strategy: the core keeps its own tiny counters (no third-party import), because
the code a function deploys must stay small. Two exporters read them:

* :func:`register_prometheus` adds a collector to a prometheus-client registry
  (the ``metrics`` extra, through :mod:`fleetpool.prometheus`) -- for the
  proxy, the demo and long-running services.
* :func:`emf_records` / :func:`flush_emf` turn what happened since the last flush
  into CloudWatch Embedded Metric Format log lines: on Lambda a JSON line on
  stdout *is* a metric, with no API call and no extra latency.

The seed's two metrics keep their names (``RemainingConnections``,
``NoConnectionsLeftError``); the rest are new.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from . import prometheus
from .cloudwatch import emf_namespace, emf_record, write_emf
from .histogram import Histogram

# Seconds; chosen around the interesting range for a lease wait (a connect is 5-20 ms).
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


#: EMF carries at most 100 values per metric.
EMF_MAX_VALUES = 100


@dataclass
class FunctionStats:
    grants: int = 0
    no_connections_left: int = 0
    reclaimed: int = 0
    fail_open: int = 0
    wait: Histogram = field(default_factory=lambda: Histogram(WAIT_BUCKETS))
    #: Waits since the last EMF flush (at most EMF_MAX_VALUES).
    recent_waits: list[float] = field(default_factory=list)
    # Deltas since the last EMF flush.
    d_grants: int = 0
    d_no_connections_left: int = 0
    d_reclaimed: int = 0
    d_fail_open: int = 0


class BudgetMetrics:
    """Counters for one budget, split by function. Thread-safe."""

    def __init__(self, budget: str, backend: str) -> None:
        self.budget = budget
        self.backend = backend
        self.remaining: int | None = None
        self.limit: int | None = None
        self._functions: dict[str, FunctionStats] = {}
        self._lock = threading.Lock()

    def _fn(self, function: str) -> FunctionStats:
        stats = self._functions.get(function)
        if stats is None:
            stats = self._functions[function] = FunctionStats()
        return stats

    def observe_capacity(self, limit: int, in_use: int) -> None:
        with self._lock:
            self.limit = limit
            self.remaining = max(0, limit - in_use)

    def granted(
        self,
        function: str,
        waited: float,
        reclaimed: int = 0,
        capacity: tuple[int, int] | None = None,
    ) -> None:
        """Count a grant; ``capacity`` = (limit, in use) also updates the gauges."""
        with self._lock:
            if capacity is not None:
                self.limit = capacity[0]
                self.remaining = max(0, capacity[0] - capacity[1])
            s = self._fn(function)
            s.grants += 1
            s.d_grants += 1
            s.reclaimed += reclaimed
            s.d_reclaimed += reclaimed
            s.wait.observe(waited)
            if len(s.recent_waits) < EMF_MAX_VALUES:
                s.recent_waits.append(waited)

    def refused(self, function: str, waited: float) -> None:
        with self._lock:
            s = self._fn(function)
            s.no_connections_left += 1
            s.d_no_connections_left += 1
            s.wait.observe(waited)
            if len(s.recent_waits) < EMF_MAX_VALUES:
                s.recent_waits.append(waited)

    def failed_open(self, function: str) -> None:
        with self._lock:
            s = self._fn(function)
            s.fail_open += 1
            s.d_fail_open += 1

    def reclaimed(self, function: str, count: int) -> None:
        if count:
            with self._lock:
                s = self._fn(function)
                s.reclaimed += count
                s.d_reclaimed += count

    def functions(self) -> dict[str, FunctionStats]:
        with self._lock:
            return dict(self._functions)

    def emf_records(
        self, now: float | None = None, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """EMF records for what happened since the last call (and reset the deltas).

        Only functions that did something since the last call get a record, and a
        record carries only what is known: no ``RemainingConnections`` before the
        budget's capacity was first seen, no ``LeaseWaitTime`` without a wait
        (CloudWatch rejects an empty value array; a 0 would be a made-up value).
        """
        ts = int((time.time() if now is None else now) * 1000)
        ns = emf_namespace(namespace)
        out: list[dict[str, Any]] = []
        with self._lock:
            for function, s in self._functions.items():
                waits = [round(v * 1000, 3) for v in s.recent_waits]
                counts = {
                    "NoConnectionsLeftError": s.d_no_connections_left,
                    "LeaseGrants": s.d_grants,
                    "ExpiredLeasesReclaimed": s.d_reclaimed,
                    "FailOpenGrants": s.d_fail_open,
                }
                if not waits and not any(counts.values()):
                    continue  # nothing happened to this function since the last flush
                values: dict[str, Any] = {}
                if self.remaining is not None:
                    values["RemainingConnections"] = self.remaining
                values.update(counts)
                if waits:
                    values["LeaseWaitTime"] = waits
                out.append(
                    emf_record(
                        ns, ts, {"Budget": self.budget, "Function": function}, values, [["Budget"]]
                    )
                )
                s.d_grants = s.d_no_connections_left = s.d_reclaimed = s.d_fail_open = 0
                s.recent_waits = []
        return out


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._budgets: dict[tuple[str, str], BudgetMetrics] = {}

    def for_budget(self, budget: str, backend: str) -> BudgetMetrics:
        with self._lock:
            key = (budget, backend)
            m = self._budgets.get(key)
            if m is None:
                m = self._budgets[key] = BudgetMetrics(budget, backend)
            return m

    def __iter__(self) -> Iterator[BudgetMetrics]:
        with self._lock:
            return iter(list(self._budgets.values()))


REGISTRY = _Registry()


def emf_records(namespace: str | None = None) -> list[dict[str, Any]]:
    """EMF records for every budget in this process (deltas since the last call)."""
    return [r for m in REGISTRY for r in m.emf_records(namespace=namespace)]


def flush_emf(stream: TextIO | None = None, namespace: str | None = None) -> int:
    """Write one EMF JSON line per budget and active function; returns the number written.

    ``namespace`` defaults to ``$FLEETPOOL_METRICS_NAMESPACE``, else ``fleetpool``.
    ``@db.handler`` calls this for its own budget at the end of each invocation on
    Lambda (see :mod:`fleetpool.aws.emf`); call it yourself elsewhere.
    """
    return write_emf(emf_records(namespace), stream)


def register_prometheus(registry: Any = None) -> Any:
    """Expose fleetpool's budget metrics through prometheus-client.

    Requires the ``metrics`` extra. Returns the collector (idempotent per registry).
    """
    return prometheus.register("fleetpool_budget", _collect_prometheus, registry)


#: Per-function counters: (Prometheus name, help, FunctionStats attribute).
_COUNTERS = (
    ("fleetpool_budget_grants", "Leases granted", "grants"),
    (
        "fleetpool_budget_no_connections_left",
        "Acquires that ended in NoConnectionsLeft (NoConnectionsLeftError)",
        "no_connections_left",
    ),
    (
        "fleetpool_budget_expired_leases_reclaimed",
        "Expired leases whose capacity was given back",
        "reclaimed",
    ),
    (
        "fleetpool_budget_fail_open_grants",
        "Leases granted locally while the store was unavailable",
        "fail_open",
    ),
)


def _collect_prometheus() -> Iterator[Any]:
    core = prometheus.families()
    remaining = core.GaugeMetricFamily(
        "fleetpool_budget_remaining_connections",
        "Connections the fleet may still open (RemainingConnections)",
        labels=["budget"],
    )
    limit = core.GaugeMetricFamily(
        "fleetpool_budget_limit", "The budget's connection limit", labels=["budget"]
    )
    counters = [
        (core.CounterMetricFamily(name, doc, labels=["budget", "function"]), attr)
        for name, doc, attr in _COUNTERS
    ]
    wait = core.HistogramMetricFamily(
        "fleetpool_budget_wait_seconds",
        "Time spent waiting for a lease",
        labels=["budget", "function"],
    )
    for m in REGISTRY:
        if m.remaining is not None:
            remaining.add_metric([m.budget], m.remaining)
        if m.limit is not None:
            limit.add_metric([m.budget], m.limit)
        for function, s in m.functions().items():
            labels = [m.budget, function]
            for family, attr in counters:
                family.add_metric(labels, getattr(s, attr))
            prometheus.add_histogram(wait, labels, s.wait)
    yield from (remaining, limit, *(family for family, _ in counters), wait)
