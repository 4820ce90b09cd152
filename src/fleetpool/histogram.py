"""A fixed-bucket histogram shared by every part that measures durations.

Strategy: counting into fixed buckets costs one bisect and three additions, no
allocation and no lock (callers that share one across threads hold their own),
so it can sit on a hot path. The same object answers every reader: Prometheus
(cumulative buckets), status pages (a coarse quantile), and processes that add
up each other's histograms (:meth:`Histogram.as_dict` written by one,
:meth:`Histogram.merge_dict` read by another). No third-party import.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError


@dataclass(slots=True)
class Histogram:
    """Counts of observations per bucket; ``counts[i]`` holds values ``<= buckets[i]``
    (and above the previous bound), the last count everything above the last bound."""

    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    #: Sum of all observed values.
    total: float = 0.0
    #: Number of observations.
    n: int = 0

    def __post_init__(self) -> None:
        self.buckets = tuple(self.buckets)
        if not self.buckets or any(b >= c for b, c in itertools.pairwise(self.buckets)):
            raise ConfigError(f"histogram buckets must be increasing, got {self.buckets!r}")
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)
        elif len(self.counts) != len(self.buckets) + 1:
            raise ConfigError(
                f"a histogram with {len(self.buckets)} buckets needs "
                f"{len(self.buckets) + 1} counts, got {len(self.counts)}"
            )

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(upper bound, observations <= bound)`` pairs ending with ``+Inf``: the shape
        Prometheus histograms take."""
        out = []
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            out.append((repr(bound), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out

    def quantile(self, q: float) -> float:
        """Upper bucket bound holding the q-quantile (coarse, for status pages); 0 when empty."""
        if not self.n:
            return 0.0
        target = q * self.n
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            if running >= target:
                return bound
        return float("inf")

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s observations to this histogram (same buckets)."""
        if other.buckets != self.buckets:
            raise ConfigError(
                f"cannot merge histograms with different buckets: {self.buckets!r} "
                f"and {other.buckets!r}"
            )
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total
        self.n += other.n

    def as_dict(self) -> dict[str, Any]:
        """Counts, sum and n as plain JSON values (the buckets are the reader's own)."""
        return {"counts": list(self.counts), "sum": self.total, "n": self.n}

    def merge_dict(self, data: Mapping[str, Any] | None) -> bool:
        """Add what :meth:`as_dict` wrote in another process.

        Returns False, changing nothing, when ``data`` is missing or was written
        for a different number of buckets (a peer running another version).
        """
        counts: Sequence[int] = (data or {}).get("counts") or ()
        if data is None or len(counts) != len(self.counts):
            return False
        self.counts = [a + int(b) for a, b in zip(self.counts, counts, strict=True)]
        self.total += float(data["sum"])
        self.n += int(data["n"])
        return True


__all__ = ["Histogram"]
