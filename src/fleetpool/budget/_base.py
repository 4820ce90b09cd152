"""The budget's backend interface and the value types every backend shares.

Strategy: a backend is a *store*, not a policy. It offers five atomic
operations -- ``try_acquire``, ``renew``, ``release``, ``leases``/``snapshot``
and ``configure`` -- plus an optional way to block until capacity may have
changed (``wait_for_change``). Everything else (waiting with a deadline,
fail-open, metrics, defaults) lives once in :mod:`fleetpool.budget._budget`.

Correctness never depends on a sweeper: every read treats a lease whose
``expires_at`` has passed as absent, and writes delete such leases as they go.
Time is wall-clock seconds because leases are shared across processes and
hosts; the Redis backend uses the server's clock so hosts' skew cannot matter.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ._policy import BudgetConfig, should_hand_off


@dataclass(frozen=True)
class Lease:
    """One connection's right to exist: an owner and an expiry.

    ``recorded`` is False for a lease granted locally while the store was
    unreachable (``on_unavailable="fail_open"``): it is not counted anywhere.
    """

    id: str
    budget: str
    function: str
    holder: str
    acquired_at: float
    expires_at: float
    meta: Mapping[str, Any] = field(default_factory=dict)
    recorded: bool = True

    def remaining(self, now: float) -> float:
        return self.expires_at - now

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


_new = object.__new__


def granted_lease(
    id: str,
    budget: str,
    function: str,
    holder: str,
    acquired_at: float,
    expires_at: float,
    meta: Mapping[str, Any],
) -> Lease:
    """``Lease(...)`` for a backend's hot path, equal in every way to the constructor's.

    A frozen dataclass sets each field through ``object.__setattr__``; filling
    the instance dictionary directly takes a fifth of the time, which is a
    measurable share of an acquire against a loopback Redis.
    """
    lease = _new(Lease)
    d = lease.__dict__
    d["id"] = id
    d["budget"] = budget
    d["function"] = function
    d["holder"] = holder
    d["acquired_at"] = acquired_at
    d["expires_at"] = expires_at
    d["meta"] = meta
    d["recorded"] = True
    return lease


@dataclass(frozen=True)
class Snapshot:
    """What a budget looks like right now."""

    budget: str
    limit: int
    in_use: int
    remaining: int
    functions: Mapping[str, int]
    waiting: int
    config: BudgetConfig

    @classmethod
    def from_counts(
        cls, budget: str, config: BudgetConfig, functions: Mapping[str, int], waiting: int
    ) -> Snapshot:
        """Build a snapshot from live leases per function; the totals follow from them."""
        in_use = sum(functions.values())
        return cls(
            budget=budget,
            limit=config.limit,
            in_use=in_use,
            remaining=max(0, config.limit - in_use),
            functions=functions,
            waiting=waiting,
            config=config,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "limit": self.limit,
            "in_use": self.in_use,
            "remaining": self.remaining,
            "functions": dict(self.functions),
            "waiting": self.waiting,
            "function_limits": {
                name: {"min": fl.min, "max": fl.max} for name, fl in self.config.functions.items()
            },
        }


# The two below live for one store call on the hot path: plain slotted classes
# build in a fifth of a frozen dataclass's time (nobody keeps or mutates them).
@dataclass(slots=True)
class AcquireRequest:
    function: str
    holder: str
    ttl: float
    meta: Mapping[str, Any]
    lease_id: str
    #: The caller's waiter ticket from an earlier refused attempt (keeps its place).
    ticket: str | None = None
    #: When refused, register (or refresh) a waiter ticket valid this long.
    queue_for: float = 0.0


@dataclass(slots=True)
class AcquireResult:
    lease: Lease | None
    reason: str
    limit: int
    in_use: int
    #: The waiter ticket to pass back on the next attempt (None if granted or not queued).
    ticket: str | None = None
    #: Expired leases this call found and removed (for the reclaim metric).
    reclaimed: int = 0


class BudgetBackend(abc.ABC):
    """A store for one named budget. Implementations must be safe to share between threads."""

    #: Short name used in metrics and messages: "memory", "sqlite", "redis", "dynamodb".
    kind: str = "abstract"
    #: Whether ``wait_for_change`` is driven by a real notification.
    notifies: bool = False
    #: Whether :meth:`contended` hears from waiters (otherwise it is always False
    #: and fair handoff never triggers on this store).
    signals_contention: bool = False

    def __init__(self, name: str) -> None:
        self.name = name
        #: The store as messages show it (its URL without credentials or options).
        self.store = f"{self.kind}://"

    @abc.abstractmethod
    def configure(self, config: BudgetConfig) -> None:
        """Store the limit and function limits (replacing previous ones)."""

    @abc.abstractmethod
    def get_config(self) -> BudgetConfig:
        """Return the stored configuration (:data:`UNCONFIGURED` if never configured)."""

    @abc.abstractmethod
    def budget_names(self) -> list[str]:
        """Names of every budget configured in this backend's store, sorted.

        Reads only: a store that does not exist has none.
        """

    @abc.abstractmethod
    def try_acquire(self, request: AcquireRequest) -> AcquireResult:
        """Atomically admit (per :func:`fleetpool.budget._policy.admit`) and record a lease."""

    @abc.abstractmethod
    def renew(self, lease: Lease, ttl: float) -> Lease:
        """Extend a live lease; raise :class:`fleetpool.LeaseLost` if it is gone."""

    @abc.abstractmethod
    def annotate(self, lease: Lease, meta: Mapping[str, Any]) -> Lease:
        """Merge ``meta`` into a live lease's metadata; :class:`fleetpool.LeaseLost` if gone."""

    @abc.abstractmethod
    def release(self, lease: Lease) -> bool:
        """Delete the lease; True if it was live. Idempotent. Wakes waiters."""

    @abc.abstractmethod
    def cancel_wait(self, ticket: str) -> None:
        """Drop a waiter ticket (best effort; tickets also expire on their own)."""

    @abc.abstractmethod
    def leases(self) -> list[Lease]:
        """Live leases, oldest first."""

    @abc.abstractmethod
    def snapshot(self) -> Snapshot:
        """Live totals and per-function counts."""

    def contended(self) -> bool:
        """Whether a refused waiter signalled since the last look, known without a store call.

        A hint for fair handoff: True makes the caller ask :meth:`offer`.
        """
        return False

    def offer(self, lease: Lease, grace: float) -> int:
        """Offer ``lease`` to the waiters (see :func:`fleetpool.budget._policy.should_hand_off`).

        Returns 1 when the caller should close its connection and release the
        lease (it counts as promised for ``grace`` seconds, so other holders keep
        theirs), 0 to keep it, -1 when the lease is gone already. This default
        reads a snapshot (not atomic with other holders' offers: it may hand over
        more than needed, never less).
        """
        snap = self.snapshot()
        return 1 if should_hand_off(snap.limit, snap.in_use, snap.waiting, 0) else 0

    def reserve_connect(self, rate: float, burst: int, within: float) -> float | None:
        """Storm control: reserve a slot per :func:`fleetpool.budget._policy.connect_slot`
        atomically in the store; the seconds to wait for it, or None (nothing reserved)."""
        raise ConfigError(
            f"connect_rate needs a budget store that keeps the fleet's connect schedule "
            f"(redis://, rediss:// or memory://), not {self.kind}://"
        )

    def wait_for_change(self, timeout: float) -> None:
        """Block up to ``timeout`` seconds or until capacity may have been freed.

        The default is a plain sleep: the caller adds jitter and retries.
        """
        time.sleep(max(0.0, timeout))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sockets, files and threads."""
