"""The admission rule: one pure function that every backend obeys.

Strategy: the decision "may this function take one more connection now?" depends
only on numbers a store can read atomically -- the limit, the live leases per
function, the per-function (min, max) and the waiters queued ahead of the caller.
It is written once here, with no I/O and no clock. Backends that decide in Python
(memory, SQLite, DynamoDB) call it inside their transaction; the Redis backend
runs a Lua transcription of it, and a hypothesis test holds the two equal.

The rule, in order:

1. A function at its ``max`` is refused, even when the budget has room (it
   waits): this stops a hot function from starving the others.
2. A function below its ``min`` is granted whenever the total is below the
   limit: its reserve is guaranteed.
3. Otherwise the caller may only use capacity that is neither reserved for
   other functions below their ``min`` nor owed to eligible waiters queued
   before it (first come, first served).

A waiter counts as "ahead" only if its own function could be granted (it is not
at its max); otherwise a queue of capped callers would block everybody else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class FunctionLimits:
    """Per-function reserve (``min``) and cap (``max``; ``None`` means the budget limit)."""

    min: int = 0
    max: int | None = None


@dataclass(frozen=True)
class BudgetConfig:
    """A budget's configuration: the fleet-wide ``limit`` and per-function limits."""

    limit: int
    functions: Mapping[str, FunctionLimits] = field(default_factory=dict)
    #: False only in :data:`UNCONFIGURED`, what a store answers for a budget never
    #: configured (a limit of 0 set on purpose is configured).
    configured: bool = field(default=True, compare=False)
    #: For a live limit (:func:`resize`): the configuration as the user set it,
    #: whose function limits are shares of its own limit. None: this one is.
    base: BudgetConfig | None = field(default=None, compare=False)

    def limits_for(self, function: str) -> FunctionLimits:
        return self.functions.get(function, FunctionLimits())

    def max_for(self, function: str) -> int:
        cap = self.limits_for(function).max
        return self.limit if cap is None else min(cap, self.limit)

    def _plain(self) -> dict[str, object]:
        return {
            "limit": self.limit,
            "functions": {n: [f.min, f.max] for n, f in self.functions.items()},
        }

    def to_json(self) -> str:
        """The form every store keeps (and the Redis script reads): compact, keys sorted,
        so one configuration is always the same text."""
        data = self._plain()
        if self.base is not None:
            data["base"] = self.base._plain()
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes | dict[str, Any]) -> BudgetConfig:
        """Read what :meth:`to_json` wrote (the stores validated it when it was configured)."""
        data = json.loads(raw) if isinstance(raw, str | bytes) else raw
        base = data.get("base")
        return cls(
            limit=int(data["limit"]),
            functions={
                n: FunctionLimits(int(lo), None if hi is None else int(hi))
                for n, (lo, hi) in data["functions"].items()
            },
            base=None if base is None else cls.from_json(base),
        )


#: The configuration of a budget its store has never heard of.
UNCONFIGURED = BudgetConfig(limit=0, configured=False)

# Reasons are stable strings: they appear in errors, metrics and the Lua script.
GRANTED = "granted"
GRANTED_RESERVE = "granted_reserve"
AT_FUNCTION_MAX = "at_function_max"
BUDGET_FULL = "budget_full"
RESERVED = "reserved_for_others"
QUEUED_BEHIND = "queued_behind_earlier_waiters"
#: Not an admission reason: storm control found no connect slot within the wait.
CONNECT_RATE = "connect_rate"
#: Every reason :func:`admit` gives.
REASONS = (GRANTED, GRANTED_RESERVE, AT_FUNCTION_MAX, BUDGET_FULL, RESERVED, QUEUED_BEHIND)


@dataclass(frozen=True)
class Decision:
    granted: bool
    reason: str


def admit(
    config: BudgetConfig,
    in_use: Mapping[str, int],
    function: str,
    waiters_ahead: Iterable[str] = (),
) -> Decision:
    """Decide whether ``function`` may take one more lease.

    Args:
        config: the budget's limit and per-function limits.
        in_use: live (unexpired) leases per function.
        function: the function asking.
        waiters_ahead: the functions of live waiters queued before the caller.

    Returns:
        A :class:`Decision`; ``reason`` is one of the module's reason constants.
    """
    total = sum(in_use.values())
    mine = in_use.get(function, 0)
    if mine >= config.max_for(function):
        return Decision(False, AT_FUNCTION_MAX)
    if total >= config.limit:
        return Decision(False, BUDGET_FULL)
    if mine < config.limits_for(function).min:
        return Decision(True, GRANTED_RESERVE)
    reserved = 0
    for name, limits in config.functions.items():
        if name != function:
            reserved += max(0, limits.min - in_use.get(name, 0))
    if total + reserved >= config.limit:
        return Decision(False, RESERVED)
    ahead = sum(1 for f in waiters_ahead if in_use.get(f, 0) < config.max_for(f))
    if total + reserved + ahead >= config.limit:
        return Decision(False, QUEUED_BEHIND)
    return Decision(True, GRANTED)


def should_hand_off(limit: int, in_use: int, waiting: int, offered: int) -> bool:
    """Whether a holder idle at check-in should give its lease to the waiters (fair handoff).

    Only when the free capacity plus the leases other holders are already
    handing over (``offered``) cannot serve every live waiter: a waiter that
    free capacity will serve needs nobody's lease, and one holder handing over
    per waiter is enough (the others keep their warm connections).

    Args:
        limit: the budget's limit.
        in_use: live leases, the caller's included.
        waiting: live waiter tickets.
        offered: leases other holders have promised to release and not yet released.
    """
    if waiting <= 0:
        return False
    return waiting > max(0, limit - in_use) + offered


def connect_slot(
    tat: float, now: float, rate: float, burst: int, within: float
) -> tuple[float | None, float]:
    """Storm control: reserve a slot for one new connection under a fleet-wide rate.

    A token bucket written as its equivalent virtual-schedule form (GCRA): the
    store keeps one number, ``tat``, the time the next slot is free; a caller
    takes the next slot and is told how long to wait for it, so each login costs
    one store call however many wait. At most ``burst + rate * T`` connections
    start in any window of ``T`` seconds.

    Args:
        tat: the stored next-free time (0 if none).
        now: the store's clock.
        rate: connections per second.
        burst: connections allowed at once after a quiet spell (>= 1).
        within: the longest wait the caller accepts (its ``max_wait`` left).

    Returns:
        ``(delay, new_tat)``: seconds to wait before connecting, or ``None``
        when the slot lies beyond ``within`` (then nothing is reserved and
        ``new_tat`` is ``tat``).
    """
    interval = 1.0 / rate
    start = max(tat, now)
    delay = max(0.0, start - now - (burst - 1) * interval)
    if delay > within:
        return None, tat
    return delay, start + interval


def auto_limit(usable: int, others: int, headroom: float) -> int:
    """A live limit: the database's connections for ordinary users (``max_connections``
    minus its reserved slots), minus the sessions that are not the fleet's, times
    ``headroom`` (0..1], rounded down; never negative."""
    return max(0, math.floor(max(0, usable - others) * headroom))


def resize(config: BudgetConfig, limit: int) -> BudgetConfig:
    """``config`` with a new ``limit``; function limits scale as shares of the limit the
    user configured them for (kept as ``base``, so repeated resizes never drift).

    A reserve rounds down (the reserves never add up to more than the new limit), a
    cap rounds down but never below its reserve.
    """
    base = config.base or config
    if base.limit <= 0:
        return BudgetConfig(limit, base.functions, base=base)
    scaled: dict[str, FunctionLimits] = {}
    for name, f in base.functions.items():
        lo = f.min * limit // base.limit
        hi = None if f.max is None else max(lo, f.max * limit // base.limit)
        scaled[name] = FunctionLimits(lo, hi)
    return BudgetConfig(limit, scaled, base=base)


def parse_auto_limit(spec: object) -> float | None:
    """The headroom of a live-limit spec: ``"auto"`` (90%) or ``"auto:80%"``; None for
    an ordinary limit (an integer). Raises :class:`ConfigError` for anything else."""
    if spec is None or (isinstance(spec, int) and not isinstance(spec, bool)):
        return None
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text == "auto":
            return DEFAULT_HEADROOM
        if text.startswith("auto:") and text.endswith("%"):
            try:
                pct = float(text[5:-1])
            except ValueError:
                pct = math.nan
            if 0 < pct <= 100:
                return pct / 100
    raise ConfigError(
        f"limit must be an integer >= 0, 'auto' or 'auto:N%' with 0 < N <= 100, got {spec!r}"
    )


#: The share of the database's free connections ``limit="auto"`` takes.
DEFAULT_HEADROOM = 0.9


def validate_config(limit: object, functions: Mapping[str, object] | None) -> BudgetConfig:
    """Turn user input into a :class:`BudgetConfig`, or raise :class:`ConfigError`.

    ``functions`` maps a function name to ``(min, max)`` (``max`` may be ``None``),
    a :class:`FunctionLimits`, or a dict with ``min``/``max`` keys.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigError(f"budget limit must be an integer >= 0, got {limit!r}")
    parsed: dict[str, FunctionLimits] = {}
    for name, spec in (functions or {}).items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"function names must be non-empty strings, got {name!r}")
        if isinstance(spec, FunctionLimits):
            lo, hi = spec.min, spec.max
        elif isinstance(spec, Mapping):
            lo, hi = spec.get("min", 0), spec.get("max")
        elif isinstance(spec, tuple | list) and len(spec) == 2:
            lo, hi = spec
        else:
            raise ConfigError(
                f"limits for function {name!r} must be (min, max), got {spec!r}; "
                "use max=None for 'up to the budget limit'"
            )
        if isinstance(lo, bool) or not isinstance(lo, int) or lo < 0:
            raise ConfigError(f"min for function {name!r} must be an integer >= 0, got {lo!r}")
        if hi is not None and (isinstance(hi, bool) or not isinstance(hi, int) or hi < lo):
            raise ConfigError(
                f"max for function {name!r} must be None or an integer >= min ({lo}), got {hi!r}"
            )
        parsed[name] = FunctionLimits(lo, hi)
    reserved = sum(f.min for f in parsed.values())
    if reserved > limit:
        raise ConfigError(
            f"the functions' reserves add up to {reserved}, more than the budget limit {limit}"
        )
    return BudgetConfig(limit, parsed)
