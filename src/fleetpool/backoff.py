"""Backoff: how long to wait before the next attempt, as pure functions and strategy objects.

Strategy: one module for every retry pause in fleetpool (the client's connect
retries, the budget's polls for capacity, SQLite's busy retries, DynamoDB's
write conflicts, the proxy's reconnects), so the formula is written once and
tested once. Hundreds of containers cold-starting together must not retry in
lockstep, so every strategy but :class:`ExponentialBackoff` adds jitter.

Two layers:

* pure functions -- :func:`exponential` (the capped ceiling for an attempt) and
  the jitters :func:`full_jitter`, :func:`equal_jitter`, :func:`spread_jitter`,
  each mapping a ceiling and a random number in ``[0, 1)`` to a delay. No clock,
  no random state: tests and the fleet simulator drive them with plain numbers.
* strategy objects with ``delay(attempt, rand)`` (pure) and ``compute(attempt)``
  (draws ``rand`` from their own seedable ``random.Random``). ``attempt`` 1 is
  the first retry. Nothing here sleeps; the caller sleeps, and
  :func:`plan_retry` fits a pause to the caller's deadline.
"""

from __future__ import annotations

import random
from typing import Protocol

from .errors import ConfigError

#: Exponents beyond this are clamped: 2**1000 overflows a float, and the cap wins long before.
_MAX_EXPONENT = 62


class Backoff(Protocol):
    def compute(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ...

    def reset(self) -> None:
        """Forget state kept between attempts (decorrelated jitter)."""
        ...


def exponential(attempt: int, base: float, cap: float, factor: float = 2.0) -> float:
    """``min(cap, base * factor**(attempt-1))``: the ceiling for retry ``attempt`` (1-based)."""
    return min(cap, base * factor ** min(max(attempt - 1, 0), _MAX_EXPONENT))


def full_jitter(ceiling: float, rand: float) -> float:
    """Uniform in ``[0, ceiling)`` for ``rand`` in ``[0, 1)``: the widest spread."""
    return ceiling * rand


def equal_jitter(ceiling: float, rand: float) -> float:
    """Half of ``ceiling`` fixed, half random: in ``[ceiling/2, ceiling)``, never immediate."""
    half = ceiling / 2.0
    return half + half * rand


def spread_jitter(ceiling: float, rand: float) -> float:
    """In ``[ceiling/2, 3*ceiling/2)``: the mean stays at ``ceiling`` (polling intervals)."""
    return ceiling * (0.5 + rand)


def _check(base: float, cap: float, factor: float) -> None:
    if not (base > 0 and cap >= base):
        raise ConfigError(f"backoff needs 0 < base <= cap, got base={base!r}, cap={cap!r}")
    if not factor >= 1.0:
        raise ConfigError(f"backoff needs a growth factor >= 1, got factor={factor!r}")


class _Curve:
    """An exponential ceiling per attempt, turned into a delay by the class's jitter.

    Plain classes, not dataclasses: the default strategy is built in a function's
    cold start, where defining six dataclasses would cost several milliseconds.
    """

    def __init__(
        self,
        base: float = 0.05,
        cap: float = 2.0,
        rng: random.Random | None = None,
        *,
        factor: float = 2.0,
    ) -> None:
        _check(base, cap, factor)
        self.base = base
        self.cap = cap
        self.factor = factor
        self.rng = rng if rng is not None else random.Random()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base={self.base!r}, cap={self.cap!r}, factor={self.factor!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Curve) or type(other) is not type(self):
            return NotImplemented
        return (self.base, self.cap, self.factor) == (other.base, other.cap, other.factor)

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds before retry ``attempt`` (1-based) for the random number ``rand``."""
        return self._jitter(exponential(attempt, self.base, self.cap, self.factor), rand)

    def _jitter(self, ceiling: float, rand: float) -> float:
        raise NotImplementedError

    def compute(self, attempt: int) -> float:
        return self.delay(attempt, self.rng.random())

    def reset(self) -> None:
        pass


class ExponentialBackoff(_Curve):
    """``min(cap, base * factor**(attempt-1))`` -- no jitter (for tests and single clients)."""

    def delay(self, attempt: int, rand: float = 0.0) -> float:
        return exponential(attempt, self.base, self.cap, self.factor)

    def compute(self, attempt: int) -> float:
        return self.delay(attempt)


class FullJitterBackoff(_Curve):
    """Uniform in ``[0, min(cap, base * factor**(attempt-1))]``: the widest spread."""

    def _jitter(self, ceiling: float, rand: float) -> float:
        return full_jitter(ceiling, rand)


class EqualJitterBackoff(_Curve):
    """Half the exponential delay fixed, half random: never retries immediately (default)."""

    def _jitter(self, ceiling: float, rand: float) -> float:
        return equal_jitter(ceiling, rand)


class SpreadJitterBackoff(_Curve):
    """Between half and one and a half times the exponential delay: a poll whose mean
    follows the curve while a crowd of pollers drifts apart."""

    def _jitter(self, ceiling: float, rand: float) -> float:
        return spread_jitter(ceiling, rand)


class DecorrelatedJitterBackoff:
    """``min(cap, uniform(base, previous * 3))``: grows from the last delay, not the count."""

    def __init__(
        self, base: float = 0.05, cap: float = 2.0, rng: random.Random | None = None
    ) -> None:
        _check(base, cap, 1.0)
        self.base = base
        self.cap = cap
        self.rng = rng if rng is not None else random.Random()
        self._previous = base

    def __repr__(self) -> str:
        return f"DecorrelatedJitterBackoff(base={self.base!r}, cap={self.cap!r})"

    def compute(self, attempt: int) -> float:
        if attempt <= 1:
            self._previous = self.base
        delay = min(self.cap, self.rng.uniform(self.base, self._previous * 3.0))
        self._previous = delay
        return delay

    def reset(self) -> None:
        self._previous = self.base


def backoff_named(name: str, base: float = 0.05, cap: float = 2.0) -> Backoff:
    """Build a strategy by name: ``equal`` (default), ``full``, ``spread``, ``decorrelated``,
    ``exponential``."""
    kinds: dict[str, type[Backoff]] = {
        "equal": EqualJitterBackoff,
        "full": FullJitterBackoff,
        "spread": SpreadJitterBackoff,
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
    "SpreadJitterBackoff",
    "backoff_named",
    "equal_jitter",
    "exponential",
    "full_jitter",
    "plan_retry",
    "spread_jitter",
]
