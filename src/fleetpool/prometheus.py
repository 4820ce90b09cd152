"""The one way fleetpool's parts export to Prometheus (the ``metrics`` extra).

Strategy: each part keeps its own plain counters and :class:`~fleetpool.histogram.Histogram`s
and only describes them to Prometheus when scraped. A part writes a function that
yields metric families and hands it to :class:`Collector`; :func:`register`
adds it to a registry once. prometheus-client is imported only here and only
when a collector is built, so the core a function deploys never needs it, and
a missing extra gets one clear error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from types import ModuleType
from typing import Any

from .errors import ConfigError
from .histogram import Histogram

#: Collectors registered by :func:`register`, by (registry, name): registering twice is a no-op.
_REGISTERED: dict[tuple[int, str], Collector] = {}


def families() -> ModuleType:
    """``prometheus_client.core`` (CounterMetricFamily, GaugeMetricFamily, ...).

    Raises:
        fleetpool.ConfigError: prometheus-client is not installed.
    """
    try:
        from prometheus_client import core
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "Prometheus export needs prometheus-client: pip install 'fleetpool[metrics]'"
        ) from exc
    return core


def add_histogram(family: Any, labels: Sequence[str], hist: Histogram) -> None:
    """Add ``hist`` to a ``HistogramMetricFamily`` under ``labels``."""
    family.add_metric(list(labels), hist.cumulative(), hist.total)


class Collector:
    """A prometheus-client collector that yields what ``collect`` returns at each scrape."""

    def __init__(self, collect: Callable[[], Iterable[Any]]) -> None:
        families()  # fail when built, not at the first scrape
        self._collect = collect

    def collect(self) -> Iterator[Any]:
        yield from self._collect()


def register(name: str, collect: Callable[[], Iterable[Any]], registry: Any = None) -> Collector:
    """Register a :class:`Collector` under ``name`` in ``registry`` (default: the global one).

    Idempotent: the same ``name`` in the same registry returns the first collector.
    """
    families()
    if registry is None:
        import prometheus_client

        registry = prometheus_client.REGISTRY
    key = (id(registry), name)
    collector = _REGISTERED.get(key)
    if collector is None:
        collector = _REGISTERED[key] = Collector(collect)
        registry.register(collector)
    return collector


__all__ = ["Collector", "add_histogram", "families", "register"]
