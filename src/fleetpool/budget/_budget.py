"""The public budget objects: waiting, fail-open and metrics around a backend.

Strategy: backends only know how to do one atomic attempt. :class:`Budget` turns
that into the API users call: it retries until a deadline, keeps the caller's
place in the queue with a waiter ticket, sleeps on the backend's notification
(or a jittered poll), translates store failures into fail-open or fail-closed
behaviour, and records metrics. :class:`AsyncBudget` runs the same steps with
every blocking store call moved to a worker thread: budget calls are rare (one
per connection, not per query), so a thread hop is cheaper than a second,
hand-written async implementation of every backend.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .._check import seconds
from ..backoff import SpreadJitterBackoff, spread_jitter
from ..errors import BudgetNotConfigured, BudgetUnavailable, ConfigError, NoConnectionsLeft
from ..holder import default_holder
from ..metrics import REGISTRY, BudgetMetrics
from ._base import AcquireRequest, AcquireResult, BudgetBackend, Lease, Snapshot
from ._policy import CONNECT_RATE, BudgetConfig, resize, validate_config

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("fleetpool.budget")

OnUnavailable = Literal["fail_open", "fail_closed"]
T = TypeVar("T")

#: Poll interval bounds when the store has no notification (or one was missed).
POLL_MIN = 0.02
POLL_MAX = 0.25


def default_function() -> str:
    return os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or "default"


class Budget:
    """A named, fleet-wide connection budget stored in a backend.

    Create one with :func:`fleetpool.open_budget`. All methods are thread-safe.

    Parameters:
        backend: the store.
        on_unavailable: ``"fail_open"`` (default) grants an unrecorded local lease
            when the store cannot be reached -- the database's own connection
            limit still protects it -- and logs a warning; ``"fail_closed"``
            raises :class:`fleetpool.BudgetUnavailable`.
    """

    def __init__(self, backend: BudgetBackend, *, on_unavailable: OnUnavailable = "fail_open"):
        if on_unavailable not in ("fail_open", "fail_closed"):
            raise ConfigError(
                f"on_unavailable must be 'fail_open' or 'fail_closed', got {on_unavailable!r}"
            )
        self.backend = backend
        self.name = backend.name
        self.on_unavailable: OnUnavailable = on_unavailable
        self.metrics: BudgetMetrics = REGISTRY.for_budget(backend.name, backend.kind)
        self._rng = random.Random()
        # Without a notification, polls grow by half each time from POLL_MIN (the first
        # pause is already one step up) to POLL_MAX, jittered around that curve.
        self._polls = SpreadJitterBackoff(
            base=POLL_MIN * 1.5, cap=POLL_MAX, factor=1.5, rng=self._rng
        )

    def __repr__(self) -> str:
        return f"<Budget {self.name!r} on {self.backend.kind}>"

    # -- configuration -------------------------------------------------------

    def configure(self, limit: int, functions: Mapping[str, Any] | None = None) -> BudgetConfig:
        """Set the fleet-wide ``limit`` and per-function ``(min, max)`` limits.

        Raises :class:`ConfigError` for negative numbers, ``max < min`` or
        reserves that add up to more than the limit.
        """
        config = validate_config(limit, functions)
        self.backend.configure(config)
        return config

    def config(self) -> BudgetConfig:
        return self.backend.get_config()

    def resize(self, limit: int) -> BudgetConfig:
        """Set a new limit, scaling the function limits as shares of the limit they were
        configured for (a live limit, :func:`fleetpool.budget._policy.resize`)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConfigError(f"budget limit must be an integer >= 0, got {limit!r}")
        current = self.backend.get_config()
        config = resize(current, limit) if current.configured else BudgetConfig(limit)
        self.backend.configure(config)
        return config

    # -- leases --------------------------------------------------------------

    def acquire(
        self,
        function: str | None = None,
        holder: str | None = None,
        ttl: float = 30.0,
        wait: float = 0.0,
        meta: Mapping[str, Any] | None = None,
    ) -> Lease:
        """Take one connection's worth of the budget for ``ttl`` seconds.

        Waits up to ``wait`` seconds for capacity (first come, first served),
        then raises :class:`fleetpool.NoConnectionsLeft` naming the budget, its
        limit, the leases in use and the time waited.
        """
        fn, hold, ttl_s, wait_s = self._check_acquire(function, holder, ttl, wait)
        start = time.monotonic()
        deadline = start + wait_s
        ticket: str | None = None
        lease_id = os.urandom(16).hex()  # a uuid4's randomness, without building a UUID
        last: AcquireResult | None = None
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            request = AcquireRequest(
                function=fn,
                holder=hold,
                ttl=ttl_s,
                meta=dict(meta or {}),
                lease_id=lease_id,
                ticket=ticket,
                queue_for=remaining + POLL_MAX * 2 if remaining > 0 else 0.0,
            )
            try:
                result = self.backend.try_acquire(request)
            except BudgetUnavailable as exc:
                return self._fail_open(exc, request, start)
            last = result
            if result.lease is not None:
                self.metrics.granted(
                    fn,
                    time.monotonic() - start,
                    result.reclaimed,
                    capacity=(result.limit, result.in_use + 1),
                )
                return result.lease
            self.metrics.observe_capacity(result.limit, result.in_use)
            self.metrics.reclaimed(fn, result.reclaimed)
            ticket = result.ticket or ticket
            if attempt == 0 and result.limit == 0:
                self._fail_if_unconfigured(ticket)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            attempt += 1
            self.backend.wait_for_change(self._pause(remaining, attempt))
        if ticket is not None:
            try:
                self.backend.cancel_wait(ticket)
            except BudgetUnavailable:
                pass
        waited = time.monotonic() - start
        self.metrics.refused(fn, waited)
        raise NoConnectionsLeft(
            budget=self.name,
            function=fn,
            limit=last.limit if last else None,
            in_use=last.in_use if last else None,
            waited=waited,
            reason=last.reason if last else "",
        )

    def renew(self, lease: Lease, ttl: float | None = None) -> Lease:
        """Extend a live lease by ``ttl`` seconds from now (default: its original ttl).

        Raises :class:`fleetpool.LeaseLost` if it already expired or was released.
        """
        ttl_s = seconds(
            "ttl", ttl if ttl is not None else lease.expires_at - lease.acquired_at, inf_ok=True
        )
        if not lease.recorded:
            # A fail-open lease lives only here: extend it locally.
            now = time.time()
            return replace(lease, expires_at=now + ttl_s)
        try:
            return self.backend.renew(lease, ttl_s)
        except BudgetUnavailable:
            if self.on_unavailable == "fail_closed":
                raise
            log.warning(
                "budget %r unavailable on renew; keeping lease %s locally", self.name, lease.id
            )
            return replace(lease, expires_at=time.time() + ttl_s)

    def annotate(self, lease: Lease, meta: Mapping[str, Any]) -> Lease:
        """Add ``meta`` to a live lease's metadata (e.g. the server session id, known
        only after connecting); returns the updated lease.

        The reaper and ``leases()`` see it from then on. Raises
        :class:`fleetpool.LeaseLost` if the lease expired or was released.
        """
        if not lease.recorded:
            return replace(lease, meta={**lease.meta, **meta})
        try:
            return self.backend.annotate(lease, meta)
        except BudgetUnavailable:
            if self.on_unavailable == "fail_closed":
                raise
            log.warning(
                "budget %r unavailable on annotate; lease %s keeps its metadata",
                self.name,
                lease.id,
            )
            return replace(lease, meta={**lease.meta, **meta})

    def release(self, lease: Lease | None) -> bool:
        """Give the lease back. Idempotent; never raises for a lease already gone.

        Returns True if the lease was live in the store.
        """
        if lease is None or not lease.recorded:
            return False
        try:
            return self.backend.release(lease)
        except BudgetUnavailable:
            # The lease will expire by itself: correctness does not need this call.
            log.warning(
                "budget %r unavailable on release; lease %s will expire", self.name, lease.id
            )
            return False

    def contended(self) -> bool:
        """Whether someone waits for this budget, as far as known without a store call.

        Fair handoff asks this at check-in; True only on stores that signal it
        (:attr:`BudgetBackend.signals_contention`: Redis, memory).
        """
        try:
            return self.backend.contended()
        except BudgetUnavailable:
            return False

    def offer(self, lease: Lease, grace: float = 5.0) -> bool:
        """Fair handoff: True when the caller should close its connection and release
        ``lease`` because waiters need it (the lease counts as promised for ``grace``
        seconds so other holders keep theirs). False: keep it. One store call.

        A lease already gone is reported as True (release it: it holds nothing).
        """
        if not lease.recorded:
            return False
        try:
            verdict = self.backend.offer(lease, seconds("grace", grace))
        except BudgetUnavailable:
            return False
        return verdict != 0

    def reserve_connect(
        self, rate: float, burst: int = 1, within: float = 0.0, function: str | None = None
    ) -> float:
        """Storm control: reserve the fleet's next slot for one new connection.

        At most ``burst + rate * T`` connections start in any ``T`` seconds,
        fleet-wide. Returns the seconds to wait before connecting (one store
        call, however many wait). Raises :class:`fleetpool.NoConnectionsLeft`
        (reason ``connect_rate``) when the slot lies more than ``within``
        seconds ahead; with the store unreachable, ``fail_open`` returns 0.
        """
        rate_s = float(rate)
        if not (rate_s > 0 and rate_s < float("inf")):
            raise ConfigError(f"connect rate must be a positive number per second, got {rate!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigError(f"connect burst must be an integer >= 1, got {burst!r}")
        within_s = seconds("within", within, zero_ok=True)
        try:
            delay = self.backend.reserve_connect(rate_s, burst, within_s)
        except BudgetUnavailable:
            if self.on_unavailable == "fail_closed":
                raise
            log.warning("budget %r unavailable for connect_rate; connecting now", self.name)
            return 0.0
        if delay is None:
            fn = function if function is not None else default_function()
            raise NoConnectionsLeft(
                f"budget {self.name!r}: the fleet's connect rate ({rate_s:g}/s, burst "
                f"{burst}) has no slot for function {fn!r} within {within_s:.3f}s "
                f"({CONNECT_RATE})",
                budget=self.name,
                function=fn,
                reason=CONNECT_RATE,
            )
        return delay

    def snapshot(self) -> Snapshot:
        """Limit, in use, remaining, per-function in use and waiting, right now."""
        snap = self.backend.snapshot()
        self.metrics.observe_capacity(snap.limit, snap.in_use)
        return snap

    def leases(self) -> list[Lease]:
        """Live leases with their metadata (the reaper reads server connection ids here)."""
        return self.backend.leases()

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Budget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------

    def _check_acquire(
        self, function: str | None, holder: str | None, ttl: float, wait: float
    ) -> tuple[str, str, float, float]:
        fn = function if function is not None else default_function()
        if not isinstance(fn, str) or not fn:
            raise ConfigError(f"function must be a non-empty string, got {function!r}")
        hold = holder if holder is not None else default_holder()
        if not isinstance(hold, str) or not hold:
            raise ConfigError(f"holder must be a non-empty string, got {holder!r}")
        return (
            fn,
            hold,
            seconds("ttl", ttl, inf_ok=True),
            seconds("wait", wait, zero_ok=True, inf_ok=True),
        )

    def _fail_if_unconfigured(self, ticket: str | None) -> None:
        # A limit of 0 is either set on purpose (everyone waits) or no limit was ever
        # set: then waiting cannot help, and the caller must learn which name it used.
        try:
            configured = self.backend.get_config().configured
        except BudgetUnavailable:
            return  # the refusal stands; the store answers again at the next attempt
        if configured:
            return
        if ticket is not None:
            with contextlib.suppress(BudgetUnavailable):
                self.backend.cancel_wait(ticket)
        raise BudgetNotConfigured(self.name, self.backend.store)

    def _pause(self, remaining: float, attempt: int) -> float:
        # With a notification the pause is only a safety net; without one it is
        # a jittered poll that grows a little, so a crowd of waiters spreads out.
        if self.backend.notifies:
            return min(remaining, spread_jitter(POLL_MAX * 2, self._rng.random()))
        return min(remaining, self._polls.compute(attempt))

    def _fail_open(self, exc: BudgetUnavailable, request: AcquireRequest, start: float) -> Lease:
        if self.on_unavailable == "fail_closed":
            raise exc
        log.warning(
            "budget %r unavailable (%s); granting an unrecorded local lease (fail_open)",
            self.name,
            exc,
        )
        self.metrics.failed_open(request.function)
        now = time.time()
        return Lease(
            id=request.lease_id,
            budget=self.name,
            function=request.function,
            holder=request.holder,
            acquired_at=now,
            expires_at=now + request.ttl,
            meta=dict(request.meta),
            recorded=False,
        )


class AsyncBudget:
    """The :class:`Budget` API with ``async`` methods, for asyncio programs (the proxy).

    Create one with :func:`fleetpool.open_async_budget`.
    """

    def __init__(self, budget: Budget) -> None:
        self.sync = budget
        self.name = budget.name
        self.backend = budget.backend

    def __repr__(self) -> str:
        return f"<AsyncBudget {self.name!r} on {self.backend.kind}>"

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # asyncio is imported here, not at module level: a function's cold start
        # (import fleetpool) would pay about 30 ms for it and never use it.
        import asyncio

        return await asyncio.to_thread(fn, *args, **kwargs)

    async def configure(
        self, limit: int, functions: Mapping[str, Any] | None = None
    ) -> BudgetConfig:
        return await self._run(self.sync.configure, limit, functions)

    async def acquire(
        self,
        function: str | None = None,
        holder: str | None = None,
        ttl: float = 30.0,
        wait: float = 0.0,
        meta: Mapping[str, Any] | None = None,
    ) -> Lease:
        # One thread per waiting acquire; a cancelled coroutine leaves the thread
        # to finish its bounded wait, and any lease it got is released.
        import asyncio

        task = asyncio.ensure_future(
            self._run(self.sync.acquire, function, holder, ttl, wait, meta)
        )
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._release_orphan)
            raise

    def _release_orphan(self, task: asyncio.Future[Lease]) -> None:
        if not task.cancelled() and task.exception() is None:
            threading.Thread(target=self.sync.release, args=(task.result(),), daemon=True).start()

    async def renew(self, lease: Lease, ttl: float | None = None) -> Lease:
        return await self._run(self.sync.renew, lease, ttl)

    async def annotate(self, lease: Lease, meta: Mapping[str, Any]) -> Lease:
        return await self._run(self.sync.annotate, lease, meta)

    async def release(self, lease: Lease | None) -> bool:
        return await self._run(self.sync.release, lease)

    async def offer(self, lease: Lease, grace: float = 5.0) -> bool:
        return await self._run(self.sync.offer, lease, grace)

    async def reserve_connect(
        self, rate: float, burst: int = 1, within: float = 0.0, function: str | None = None
    ) -> float:
        return await self._run(self.sync.reserve_connect, rate, burst, within, function)

    async def snapshot(self) -> Snapshot:
        return await self._run(self.sync.snapshot)

    async def config(self) -> BudgetConfig:
        return await self._run(self.sync.config)

    async def leases(self) -> list[Lease]:
        return await self._run(self.sync.leases)

    async def close(self) -> None:
        await self._run(self.sync.close)

    async def __aenter__(self) -> AsyncBudget:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
