"""Backoff strategies: pure objects that say how long to wait, never sleep themselves.

Strategy: hundreds of containers cold-starting together must not retry in
lockstep, so every strategy but :class:`ExponentialBackoff` adds jitter (the
three flavours of the well-known "exponential backoff and jitter" analysis).
``compute(attempt)`` is the whole interface (attempt 1 is the first retry);
sleeping and the deadline live in the caller (:func:`plan_retry`), so tests and
the fleet simulator drive them with a fake clock and a seeded ``random.Random``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import ConfigError


class Backoff(Protocol):
    def compute(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ...

    def reset(self) -> None:
        """Forget state kept between attempts (decorrelated jitter)."""
        ...


def _check(base: float, cap: float) -> None:
    if not (base > 0 and cap >= base):
        raise ConfigError(f"backoff needs 0 < base <= cap, got base={base!r}, cap={cap!r}")


def _exp(base: float, cap: float, attempt: int) -> float:
    # Clamp the exponent: 2**1000 is a float overflow, and the cap wins long before.
    return min(cap, base * 2.0 ** min(max(attempt - 1, 0), 62))


@dataclass
class ExponentialBackoff:
    """``min(cap, base * 2**(attempt-1))`` -- no jitter (for tests and single clients)."""

    base: float = 0.05
    cap: float = 2.0

    def __post_init__(self) -> None:
        _check(self.base, self.cap)

    def compute(self, attempt: int) -> float:
        return _exp(self.base, self.cap, attempt)

    def reset(self) -> None:
        pass


@dataclass
class FullJitterBackoff:
    """Uniform in ``[0, min(cap, base * 2**(attempt-1))]``: the widest spread."""

    base: float = 0.05
    cap: float = 2.0
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check(self.base, self.cap)

    def compute(self, attempt: int) -> float:
        return self.rng.uniform(0.0, _exp(self.base, self.cap, attempt))

    def reset(self) -> None:
        pass


@dataclass
class EqualJitterBackoff:
    """Half the exponential delay fixed, half random: never retries immediately (default)."""

    base: float = 0.05
    cap: float = 2.0
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check(self.base, self.cap)

    def compute(self, attempt: int) -> float:
        half = _exp(self.base, self.cap, attempt) / 2.0
        return half + self.rng.uniform(0.0, half)

    def reset(self) -> None:
        pass


@dataclass
class DecorrelatedJitterBackoff:
    """``min(cap, uniform(base, previous * 3))``: grows from the last delay, not the count."""

    base: float = 0.05
    cap: float = 2.0
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)
    _previous: float = field(default=0.0, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check(self.base, self.cap)
        self._previous = self.base

    def compute(self, attempt: int) -> float:
        if attempt <= 1:
            self._previous = self.base
        delay = min(self.cap, self.rng.uniform(self.base, self._previous * 3.0))
        self._previous = delay
        return delay

    def reset(self) -> None:
        self._previous = self.base


def backoff_named(name: str, base: float = 0.05, cap: float = 2.0) -> Backoff:
    """Build a strategy by name: ``equal`` (default), ``full``, ``decorrelated``,
    ``exponential``."""
    kinds: dict[str, type[Backoff]] = {
        "equal": EqualJitterBackoff,
        "full": FullJitterBackoff,
        "decorrelated": DecorrelatedJitterBackoff,
        "exponential": ExponentialBackoff,
    }
    if name not in kinds:
        raise ConfigError(f"unknown backoff {name!r}; accepted: {', '.join(kinds)}")
    return kinds[name](base=base, cap=cap)  # type: ignore[call-arg]


def plan_retry(
    delay: float, now: float, deadline: float, min_attempt_time: float = 0.0
) -> float | None:
    """How long to sleep before the next attempt, or ``None`` when the deadline forbids it.

    The delay is shortened to fit the deadline; a retry is only worth it if at
    least ``min_attempt_time`` remains for the attempt itself.
    """
    remaining = deadline - now
    if remaining <= min_attempt_time:
        return None
    return max(0.0, min(delay, remaining - min_attempt_time))


__all__ = [
    "Backoff",
    "DecorrelatedJitterBackoff",
    "EqualJitterBackoff",
    "ExponentialBackoff",
    "FullJitterBackoff",
    "backoff_named",
    "plan_retry",
]
