"""In-memory budget backend: thread-safe, one process. For tests, the simulator, and a
single long-running process (such as one proxy) that needs no shared store.

Strategy: all budgets with the same name in one process share one state object
(``memory://`` opened twice is the same budget), guarded by a condition variable
that release notifies, so waiters wake the moment capacity frees.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ..errors import LeaseLost
from ._base import AcquireRequest, AcquireResult, BudgetBackend, Lease, Snapshot
from ._policy import UNCONFIGURED, BudgetConfig, connect_slot, should_hand_off
from ._state import Waiter, acquire_step, in_use_by_function


class _State:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.config = UNCONFIGURED
        self.leases: dict[str, Lease] = {}
        self.waiters: dict[str, Waiter] = {}
        #: Lease id -> until when its holder promised to release it (fair handoff).
        self.offers: dict[str, float] = {}
        #: Storm control: when the next connect slot is free.
        self.tat = 0.0
        self.version = 0


_STATES: dict[str, _State] = {}
_STATES_LOCK = threading.Lock()


class MemoryBackend(BudgetBackend):
    kind = "memory"
    notifies = True
    signals_contention = True

    def __init__(self, name: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__(name)
        self.clock = clock
        with _STATES_LOCK:
            self._s = _STATES.setdefault(name, _State())

    def configure(self, config: BudgetConfig) -> None:
        with self._s.cond:
            self._s.config = config
            self._bump()

    def get_config(self) -> BudgetConfig:
        with self._s.cond:
            return self._s.config

    def budget_names(self) -> list[str]:
        with _STATES_LOCK:
            states = list(_STATES.items())
        return sorted(name for name, state in states if state.config.configured)

    def _bump(self) -> None:
        self._s.version += 1
        self._s.cond.notify_all()

    def try_acquire(self, request: AcquireRequest) -> AcquireResult:
        s = self._s
        with s.cond:
            now = self.clock()
            step = acquire_step(
                self.name,
                s.config,
                s.leases.values(),
                s.waiters.values(),
                request,
                now,
                request.lease_id,
            )
            for lease_id in step.expired:
                del s.leases[lease_id]
            for ticket in step.expired_waiters:
                s.waiters.pop(ticket, None)
            if step.lease is not None:
                s.leases[step.lease.id] = step.lease
                if request.ticket:
                    s.waiters.pop(request.ticket, None)
            elif step.waiter is not None:
                s.waiters[step.waiter.ticket] = step.waiter
            elif request.ticket:
                s.waiters.pop(request.ticket, None)
            if step.expired:
                self._bump()
            return AcquireResult(
                lease=step.lease,
                reason=step.decision.reason,
                limit=s.config.limit,
                in_use=step.in_use,
                ticket=step.waiter.ticket if step.waiter else None,
                reclaimed=len(step.expired),
            )

    def renew(self, lease: Lease, ttl: float) -> Lease:
        with self._s.cond:
            now = self.clock()
            current = self._s.leases.get(lease.id)
            if current is None or current.expires_at <= now:
                self._s.leases.pop(lease.id, None)
                raise LeaseLost.of(lease)
            renewed = replace(current, expires_at=now + ttl)
            self._s.leases[lease.id] = renewed
            return renewed

    def annotate(self, lease: Lease, meta: Mapping[str, Any]) -> Lease:
        with self._s.cond:
            current = self._s.leases.get(lease.id)
            if current is None or current.expires_at <= self.clock():
                raise LeaseLost.of(lease)
            annotated = replace(current, meta={**current.meta, **meta})
            self._s.leases[lease.id] = annotated
            return annotated

    def contended(self) -> bool:
        # One process: the waiters are in memory, reading them is the signal.
        s = self._s
        if not s.waiters:
            return False
        with s.cond:
            now = self.clock()
            return any(w.expires_at > now for w in s.waiters.values())

    def offer(self, lease: Lease, grace: float) -> int:
        s = self._s
        with s.cond:
            now = self.clock()
            waiting = sum(1 for w in s.waiters.values() if w.expires_at > now)
            if waiting == 0:
                return 0
            current = s.leases.get(lease.id)
            if current is None or current.expires_at <= now:
                return -1
            live = [x for x in s.leases.values() if x.expires_at > now]
            s.offers = {k: v for k, v in s.offers.items() if v > now and k in s.leases}
            if not should_hand_off(s.config.limit, len(live), waiting, len(s.offers)):
                return 0
            s.offers[lease.id] = now + grace
            return 1

    def reserve_connect(self, rate: float, burst: int, within: float) -> float | None:
        s = self._s
        with s.cond:
            delay, s.tat = connect_slot(s.tat, self.clock(), rate, burst, within)
            return delay

    def release(self, lease: Lease) -> bool:
        with self._s.cond:
            self._s.offers.pop(lease.id, None)
            current = self._s.leases.pop(lease.id, None)
            self._bump()
            return current is not None and current.expires_at > self.clock()

    def cancel_wait(self, ticket: str) -> None:
        with self._s.cond:
            if self._s.waiters.pop(ticket, None) is not None:
                self._bump()

    def leases(self) -> list[Lease]:
        with self._s.cond:
            now = self.clock()
            return sorted(
                (x for x in self._s.leases.values() if x.expires_at > now),
                key=lambda x: x.acquired_at,
            )

    def snapshot(self) -> Snapshot:
        with self._s.cond:
            now = self.clock()
            current = [x for x in self._s.leases.values() if x.expires_at > now]
            waiting = sum(1 for w in self._s.waiters.values() if w.expires_at > now)
            config = self._s.config
        return Snapshot.from_counts(self.name, config, in_use_by_function(current), waiting)

    def wait_for_change(self, timeout: float) -> None:
        with self._s.cond:
            version = self._s.version
            # An expiring lease frees capacity without anyone calling release:
            # wake up when the earliest one runs out.
            now = self.clock()
            soonest = min((x.expires_at for x in self._s.leases.values()), default=now + timeout)
            limit = max(0.0, min(timeout, soonest - now + 0.001))
            self._s.cond.wait_for(lambda: self._s.version != version, timeout=limit)

    @staticmethod
    def reset_all() -> None:
        """Forget every in-memory budget (tests)."""
        with _STATES_LOCK:
            _STATES.clear()


__all__ = ["MemoryBackend"]
