"""``AsyncDatabase``: :class:`~fleetpool.Database`'s semantics for asyncio handlers.

Strategy: the same settings, the same decisions, the same counters -- only the
I/O awaits. Settings, tags and error reports come from
:class:`~fleetpool.client.database.BaseDatabase`; what a checkout, a check-in
or a failed connect attempt must do is decided by the pure functions of
:mod:`fleetpool.client.decisions` (``plan_checkout``, ``plan_checkin``,
``plan_connect_attempt``), called exactly as ``Database`` calls them; the
session is read from memory by the driver code shared with the blocking
adapters. Drivers: psycopg's ``AsyncConnection`` and asyncmy (chosen over
aiomysql by ``python -m benchmarks.async_mysql``).

The budget stays the blocking :class:`~fleetpool.Budget`, used through
:class:`~fleetpool.AsyncBudget` (each store call in a worker thread; a cancelled
acquire releases what it got), so the event loop never waits on the store. A
warm checkout makes no store call at all (renewal happens past half the lease
TTL), so the thread hop is paid at the first invocation of a container, at
renewal and at release only -- measured by ``python -m benchmarks.async_client``.
The reaper and the live limit's look at the server (blocking code over a
driver) run in a worker thread too, their statements sent back to the loop on
the same connection. Fair handoff asks the budget's contention signal on the
loop (a zero-timeout poll of the subscribed socket; the subscription itself is
made at the first check-in holding a lease), offers the lease through the
worker thread, and waits for the server to end the handed-off session there.
Storm control reserves the login's slot through the worker thread and sleeps
on the loop.

One connection per ``AsyncDatabase``: checkouts are serialised by an
``asyncio.Lock``; nested scopes in one task (and in tasks it starts, which
inherit its context) share one checkout.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ..budget import AsyncBudget
from ..engines import ErrorKind, SessionState
from ..errors import BudgetNotConfigured, LeaseLost, NoConnectionsLeft
from . import reaper, shutdown
from ._driver import wait_session_end
from .database import HANDOFF_CLOSE_WAIT, MAX_ATTEMPTS, BaseDatabase, log
from .decisions import plan_checkout
from .reaper import reap_check_due

if TYPE_CHECKING:
    from ._driver import AsyncDriver

R = TypeVar("R")

#: Seconds the reaper's statements may take, each (they run from a worker thread).
REAPER_STATEMENT_TIMEOUT = 30.0


class AsyncDatabase(BaseDatabase):
    """A database for an asyncio serverless function: one warm connection, leased, clean.

    The parameters are :class:`~fleetpool.Database`'s; ``on_connect`` may be a
    coroutine function. Drivers: ``postgresql://`` uses psycopg's
    ``AsyncConnection``, ``mysql://``/``mariadb://`` uses asyncmy (the
    ``mysql-async`` extra)::

        db = fleetpool.AsyncDatabase(os.environ["DATABASE_URL"], budget=os.environ["BUDGET_URL"])

        @db.handler
        async def handler(event, context):
            async with db.transaction() as conn:
                ...

    Raises:
        fleetpool.ConfigError: for a malformed URL or argument (at construction).
    """

    def _init_state(self) -> None:
        self._lock = asyncio.Lock()
        self._abudget: AsyncBudget | None = None
        self._holding: contextvars.ContextVar[bool] = contextvars.ContextVar(
            f"fleetpool_holding_{id(self)}", default=False
        )
        self._depth = 0
        self._checked_out = False
        self._pid = os.getpid()
        self._next_reap_check = 0.0
        self._registered = False
        self.last_reap: reaper.ReapReport | None = None

    # -- public surface -----------------------------------------------------

    @property
    def driver(self) -> AsyncDriver:
        if self._driver is None:
            if self.target.engine == "postgresql":
                from ._postgres_async import AsyncPostgresDriver

                self._driver = AsyncPostgresDriver(self.target)
            else:
                from ._mysql_async import AsyncMySQLDriver

                self._driver = AsyncMySQLDriver(self.target)
        return self._driver  # type: ignore[no-any-return]

    def connection(self) -> _AsyncScope:
        """``async with db.connection() as conn:`` -- the driver's connection, checked in after.

        Raises what :meth:`fleetpool.Database.connection` raises (subclassing
        the async driver's ``OperationalError``).
        """
        return _AsyncScope(self, True)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """``async with db.transaction() as conn:`` -- commit on success, roll back on error."""
        async with self.connection() as conn, self.driver.transaction(conn):
            yield conn

    def invocation(self) -> _AsyncScope:
        """A scope for one invocation: connections used inside are checked in at its end."""
        return _AsyncScope(self, False)

    def handler(self, fn: Callable[[Any, Any], Awaitable[R]]) -> Callable[[Any, Any], Awaitable[R]]:
        """Decorate an async ``handler(event, context)``: check-in and metrics after each call."""

        @functools.wraps(fn)
        async def wrapper(event: Any, context: Any) -> R:
            try:
                async with self.invocation():
                    return await fn(event, context)
            finally:
                if self._budget is not None:
                    self.metrics.flush(self._budget.metrics, context)

        return wrapper

    def mark_dirty(self) -> None:
        """Tell the client that this invocation left session state it could not see."""
        if self._conn is not None:
            self.driver.mark(self._conn, SessionState.OTHER)

    async def aclose(self) -> None:
        """Close the connection and release the lease. Safe to call more than once."""
        async with self._lock:
            self._discard()
            await self._release()
        shutdown.unregister(self)

    def close(self, timeout: float | None = None) -> None:
        """Close the socket and release the lease without the event loop (shutdown hooks).

        ``timeout`` is accepted for the shutdown registry; nothing here waits on the loop.
        """
        self._discard()
        lease, self._lease = self._lease, None
        if lease is not None and self._budget is not None:
            self.stats.releases += 1
            try:
                self._budget.release(lease)
            except Exception:
                log.warning("could not release lease %s; it will expire", lease.id, exc_info=True)
        self._tag = None
        shutdown.unregister(self)

    async def __aenter__(self) -> AsyncDatabase:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- scopes -------------------------------------------------------------

    async def _enter(self, checkout: bool) -> contextvars.Token[bool] | None:
        token = None
        if not self._holding.get():
            await self._lock.acquire()
            token = self._holding.set(True)
        try:
            if checkout and not self._checked_out:
                await self._checkout()
            self._depth += 1
        except BaseException:
            if token is not None:
                self._holding.reset(token)
                self._lock.release()
            raise
        return token

    async def _exit(self, token: contextvars.Token[bool] | None, failed: bool) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._checked_out:
                await self._checkin(failed)
        finally:
            if token is not None:
                self._holding.reset(token)
                self._lock.release()

    # -- checkout -----------------------------------------------------------

    async def _checkout(self) -> None:
        if os.getpid() != self._pid:
            self._after_fork()
        self.stats.checkouts += 1
        deadline = time.monotonic() + self.max_wait
        budget = await self._async_budget()
        if budget is not None:
            lease = self._lease
            plan = plan_checkout(
                time.time(),
                budgeted=True,
                lease_expires_at=lease.expires_at if lease is not None else None,
                lease_ttl=self.lease_ttl,
                has_connection=self._conn is not None,
            )
            if plan.drop_connection:
                self._discard()
            if plan.acquire:
                await self._acquire(budget, deadline)
            elif plan.renew and lease is not None:
                try:
                    self._lease = await budget.renew(lease, self.lease_ttl)
                    self.stats.renewals += 1
                except LeaseLost:
                    log.info("lease %s was lost; reconnecting under a new lease", lease.id)
                    self._lease = None
                    self._discard()
                    await self._acquire(budget, deadline)
        conn = self._conn
        if conn is not None and not self.driver.alive(conn):
            log.info("the server closed session %s; reconnecting", self._session_id)
            self._discard()
            self.stats.reconnects += 1
        if self._conn is None:
            await self._connect(deadline)
        self._checked_out = True

    async def _async_budget(self) -> AsyncBudget | None:
        if self._abudget is None and self._budget_spec is not None:
            # Opening a budget from its URL may touch the network: off the loop.
            budget = self._budget or await asyncio.to_thread(lambda: self.budget)
            if budget is not None:
                self._abudget = AsyncBudget(budget)
        return self._abudget

    async def _acquire(self, budget: AsyncBudget, deadline: float) -> None:
        tag = self._new_tag()
        try:
            self._lease = await budget.acquire(**self._acquire_args(tag, deadline))
        except BudgetNotConfigured:
            if not self._probe_wanted():
                raise
            await self._probe_limit(deadline)
            await self._acquire(budget, deadline)
            return
        except NoConnectionsLeft as exc:
            raise self._no_connections_left(exc) from exc
        self._tag = tag
        self.stats.acquires += 1

    async def _connect(self, capacity_deadline: float) -> None:
        driver = self.driver
        attempts = self._attempts(capacity_deadline)
        errors: tuple[type[BaseException], ...] = (*driver.connect_errors, TimeoutError)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if self.connect_rate is not None:
                await self._connect_slot(capacity_deadline)
            # Credentials may call AWS (secret, IAM token): off the loop.
            login = await asyncio.to_thread(self.credentials.resolve)
            remaining = attempts.remaining()
            try:
                async with asyncio.timeout(remaining + 1.0):
                    conn = await driver.connect(
                        login,
                        autocommit=self.autocommit,
                        tag=attempts.tag,
                        timeout=remaining,
                        idle_timeout=self.idle_timeout,
                        statement_timeout=self.statement_timeout,
                    )
            except errors as exc:
                # The PostgreSQL classifier may probe the server (a blocking socket).
                kind = (
                    ErrorKind.TRANSIENT
                    if isinstance(exc, TimeoutError)
                    else await asyncio.to_thread(driver.error_kind, exc)
                )
                step = attempts.after_failure(exc, kind, attempt)
                if step is None:
                    break
                if step.pause is not None:
                    await asyncio.sleep(step.pause)
                continue
            attempts.succeeded()
            await self._on_connected(conn)
            if self._conn is None:
                continue
            return
        raise attempts.error()

    async def _connect_slot(self, capacity_deadline: float) -> None:
        """Storm control: wait for this login's slot in the fleet's connect schedule."""
        budget = self._abudget
        assert budget is not None
        try:
            delay = await budget.reserve_connect(**self._connect_slot_args(capacity_deadline))
        except NoConnectionsLeft as exc:
            raise self._no_connections_left(exc) from exc
        if delay > 0:
            self.stats.connect_waits += 1
            await asyncio.sleep(delay)

    async def _on_connected(self, conn: Any) -> None:
        driver = self.driver
        self._conn = conn
        self._session_id = driver.session_id(conn)
        self.stats.connects += 1
        try:
            await self._run_on_connect(conn)
        except BaseException:
            self._discard()
            raise
        budget = self._abudget
        if budget is not None and self._lease is not None:
            try:
                self._lease = await budget.annotate(self._lease, {"session_id": self._session_id})
            except Exception:
                log.warning("could not record session id with lease", exc_info=True)
        if not self._registered:
            shutdown.register(self, signals=self.handle_signals)
            self._registered = True
        await self._maybe_resize(conn)
        if self._conn is not None:
            await self._maybe_reap(conn)

    async def _run_on_connect(self, conn: Any) -> None:
        if self.on_connect is not None:
            result = self.on_connect(conn)
            if inspect.isawaitable(result):
                await result
        self.driver.rebase(conn)

    # -- check-in -----------------------------------------------------------

    async def _checkin(self, failed: bool) -> None:
        self._checked_out = False
        conn = self._conn
        keep = self.mode == "reuse"
        if conn is None:
            if not keep:
                await self._release()
            return
        driver = self.driver
        plan = self._checkin_plan(conn, keep)
        if plan is None:
            return
        if plan.offer_lease and await self._hand_off():
            return
        if plan.close:
            self._discard()
            if not keep:
                await self._release()
            return
        try:
            async with asyncio.timeout(self.connect_timeout + (self.statement_timeout or 0)):
                if plan.reset:
                    await driver.reset(conn)
                    self.stats.resets += 1
                    if self.on_connect is not None:
                        await self._run_on_connect(conn)
                elif plan.rollback:
                    await driver.rollback(conn)
                    self.stats.rollbacks += 1
                    if plan.restore_client:
                        await driver.restore_client(conn)
                elif plan.restore_client:
                    await driver.restore_client(conn)
        except Exception:
            log.warning("could not clean session %s; closing it", self._session_id, exc_info=True)
            self._discard()

    async def _hand_off(self) -> bool:
        """Offer the lease to waiters; True when it was given (connection closed first,
        so the session is gone before a waiter can count on its slot)."""
        lease, budget = self._lease, self._abudget
        if lease is None or budget is None or not await budget.offer(lease):
            return False
        conn, self._conn = self._conn, None
        if conn is not None:
            self.stats.closes += 1
            await self._close_and_wait(conn)
        await self._release()
        self.stats.handoffs += 1
        return True

    async def _close_and_wait(self, conn: Any) -> None:
        # Close on the loop (the driver's transport lives there); wait off it.
        dup = self.driver.close_watching(conn)
        await asyncio.to_thread(wait_session_end, dup, HANDOFF_CLOSE_WAIT)

    # -- teardown -----------------------------------------------------------

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self.stats.closes += 1
            self.driver.close(conn)

    async def _release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None and self._abudget is not None:
            self.stats.releases += 1
            try:
                await self._abudget.release(lease)
            except Exception:
                log.warning("could not release lease %s; it will expire", lease.id, exc_info=True)
        self._tag = None

    # -- live limit -----------------------------------------------------------

    async def _maybe_resize(self, conn: Any) -> None:
        headroom, budget = self._limit_check_due(), self._budget
        if headroom is None or budget is None:
            return
        driver = self.driver
        bridge = _LoopBridge(driver, asyncio.get_running_loop())
        try:
            await asyncio.to_thread(self._set_live_limit, budget, headroom, conn, bridge)
        except Exception:
            log.warning("could not set the live budget limit; keeping it", exc_info=True)
        finally:
            try:
                if not driver.alive(conn):
                    raise ConnectionError("session ended while reading the server's limit")
                if driver.report(conn).in_transaction:
                    await driver.rollback(conn)
            except Exception:
                self._discard()

    async def _probe_limit(self, deadline: float) -> None:
        """Set the live limit of an unconfigured budget from a short session of its own."""
        budget, headroom = self._budget, self.limit_headroom
        assert budget is not None and headroom is not None
        driver = self.driver
        login = await asyncio.to_thread(self.credentials.resolve)
        args = self._probe_connect_args(deadline)
        async with asyncio.timeout(args["timeout"] + 1.0):
            conn = await driver.connect(login, **args)
        try:
            bridge = _LoopBridge(driver, asyncio.get_running_loop())
            await asyncio.to_thread(self._set_live_limit, budget, headroom, conn, bridge)
            self._next_limit_check = time.monotonic() + self.limit_interval
        finally:
            await self._close_and_wait(conn)

    # -- reaper -------------------------------------------------------------

    async def _maybe_reap(self, conn: Any) -> None:
        if self.reap_threshold is None:
            return
        now = time.monotonic()
        if not reap_check_due(now, self._next_reap_check):
            return
        self._next_reap_check = now + self.reap_interval
        bridge = _LoopBridge(self.driver, asyncio.get_running_loop())
        try:
            report = await asyncio.to_thread(
                functools.partial(
                    reaper.run_if_needed,
                    bridge,
                    conn,
                    budget=self._budget,
                    holder=self.holder,
                    threshold=self.reap_threshold,
                    interval=self.reap_interval,
                    tag_prefix=self.tag_prefix,
                    idle_after=self.reap_idle_after,
                )
            )
            if report is not None:
                self.stats.reaps += 1
                self.last_reap = report
                log.info("reaper: %s", report.summary())
        except Exception:
            log.warning("reaper run failed; continuing", exc_info=True)
        finally:
            try:
                if not self.driver.alive(conn):
                    raise ConnectionError("session ended during the reaper run")
                if self.driver.report(conn).in_transaction:
                    await self.driver.rollback(conn)
                self.driver.rebase(conn)
            except Exception:
                log.warning("could not clean up after the reaper; reconnecting", exc_info=True)
                self._discard()


class _AsyncScope:
    """One ``async with`` of a checkout (a class, not a generator: this is the hot path)."""

    __slots__ = ("checkout", "db", "token")

    def __init__(self, db: AsyncDatabase, checkout: bool) -> None:
        self.db = db
        self.checkout = checkout
        self.token: contextvars.Token[bool] | None = None

    async def __aenter__(self) -> Any:
        self.token = await self.db._enter(self.checkout)
        return self.db._conn if self.checkout else self.db

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self.db._exit(self.token, exc_type is not None)


class _LoopBridge:
    """The reaper's blocking driver interface over an async driver, from a worker thread.

    Each statement is handed to the event loop (which is free: it awaits the
    worker) and waited for with a bound.
    """

    def __init__(self, driver: AsyncDriver, loop: asyncio.AbstractEventLoop) -> None:
        self._driver = driver
        self._loop = loop
        self.engine = driver.engine
        self.connect_errors = driver.connect_errors

    def error_code(self, exc: BaseException) -> str | int | None:
        return self._driver.error_code(exc)

    def fetch(self, conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        future = asyncio.run_coroutine_threadsafe(self._driver.fetch(conn, sql, params), self._loop)
        return future.result(REAPER_STATEMENT_TIMEOUT)


__all__ = ["AsyncDatabase"]
