"""The small surface the client needs from a database driver, and what is common to both.

Strategy: :class:`Database` speaks to psycopg and PyMySQL through this one
interface, so its checkout/check-in logic is written once; :class:`AsyncDatabase`
speaks to psycopg's async connection and asyncmy through the coroutine twin of
the same interface, and both share :class:`DriverBase` (everything read from
memory). Each adapter wraps
the driver's own connection class minimally -- a subclass that watches the
statement text on its way out (to know, without a round trip, whether the
session got dirty) -- and hands the user the driver's own object.

Liveness without a round trip: a healthy idle connection has nothing to read.
If its socket is readable, the server has said something unprompted -- in
practice a FATAL "terminating connection" (idle timeout, restart, reaper) or a
FIN -- so the connection is discarded before use. A poll with a zero timeout
costs one system call.
"""

from __future__ import annotations

import abc
import functools
import os
import select
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any

from ..engines import ErrorKind, SessionState
from .credentials import Login
from .decisions import SessionReport
from .dsn import Target


def socket_readable(fd: int) -> bool:
    """True when ``fd`` has data or EOF pending (zero timeout, no I/O on the connection)."""
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, _EVENTS)
    return bool(poller.poll(0))


_EVENTS = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


def cached_classifier(
    classify: Callable[[str], SessionState],
) -> Callable[[Any], SessionState]:
    """Wrap a statement classifier with a cache keyed by the statement text.

    Applications send the same few statement strings over and over, so after
    the first invocation classification is one dict lookup.
    """
    cached = functools.lru_cache(maxsize=2048)(classify)

    def of(query: Any) -> SessionState:
        if isinstance(query, str):
            return cached(query)
        if isinstance(query, bytes | bytearray | memoryview):
            return cached(bytes(query).decode("utf-8", "replace"))
        strings = getattr(query, "strings", None)  # a t-string Template
        if isinstance(strings, tuple):
            return cached(" ".join(str(s) for s in strings))
        # Anything else we cannot read cheaply: assume the worst, reset.
        return SessionState.OTHER

    return of


def wait_session_end(dup: int, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for EOF on ``dup`` (from
    :meth:`DriverBase.close_watching`), then close it."""
    if dup < 0:
        return
    try:
        poller = select.poll()
        poller.register(dup, _EVENTS)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not poller.poll(max(1, int(left * 1000))):
                return
            try:
                # Data before EOF (e.g. a TLS close_notify): drain it.
                if not os.read(dup, 65536):
                    return
            except OSError:
                return
    finally:
        os.close(dup)


class DriverBase(abc.ABC):
    """What a driver answers from memory: error classes, session id, liveness, reports.

    Shared by the blocking :class:`Driver` and the asyncio :class:`AsyncDriver`,
    so both clients read a session's state the same way.
    """

    engine: str = "abstract"
    #: The driver's ``OperationalError``: fleetpool's client errors subclass it.
    operational_error: type[BaseException]
    #: Every exception type a connect attempt may raise that the client classifies.
    connect_errors: tuple[type[BaseException], ...]

    def __init__(self, target: Target) -> None:
        self.target = target

    @abc.abstractmethod
    def error_kind(self, exc: BaseException) -> ErrorKind: ...

    @abc.abstractmethod
    def error_code(self, exc: BaseException) -> str | int | None: ...

    def retry_without_option(self, exc: BaseException) -> bool:
        """Whether a fatal connect error came from an optional setting just turned off."""
        return False

    @abc.abstractmethod
    def session_id(self, conn: Any) -> int:
        """The server's id for the session (backend pid, thread id), known without I/O."""

    @abc.abstractmethod
    def fileno(self, conn: Any) -> int: ...

    @abc.abstractmethod
    def close(self, conn: Any) -> None:
        """Close at once, without waiting on the server (shutdown hooks use it too)."""

    def close_and_wait(self, conn: Any, timeout: float) -> None:
        """Close, then wait up to ``timeout`` seconds for the server to end the session.

        A server ends a session after the client's goodbye, asynchronously: its
        slot stays taken (and visible in pg_stat_activity / processlist) for a
        moment. A lease handed to a waiter must not be released before that, or
        the waiter's login could find the server one session fuller than the
        budget says.
        """
        wait_session_end(self.close_watching(conn), timeout)

    def close_watching(self, conn: Any) -> int:
        """Close ``conn`` and return a duplicate of its socket for
        :func:`wait_session_end` (-1 without one). The server closes its end only
        once the session is gone, so the duplicate, kept open across the
        driver's close, sees EOF then. Split in two so an async client closes
        on its loop and waits in a worker thread.
        """
        try:
            fd = self.fileno(conn)
            dup = os.dup(fd) if fd >= 0 else -1
        except (OSError, ValueError):
            dup = -1
        self.close(conn)
        return dup

    def alive(self, conn: Any) -> bool:
        """Cheap liveness: open, and nothing unsolicited waiting on the socket.

        The poll object is made once per connection and kept on it.
        """
        try:
            fd = self.fileno(conn)
        except Exception:
            return False
        if fd < 0:
            return False
        poller = getattr(conn, "_fp_poll", None)
        if poller is None or conn._fp_poll_fd != fd:
            poller = select.poll()
            poller.register(fd, _EVENTS)
            conn._fp_poll = poller
            conn._fp_poll_fd = fd
        return not poller.poll(0)

    @abc.abstractmethod
    def clean(self, conn: Any) -> bool:
        """True when the session certainly needs nothing (the hot path; memory only)."""

    @abc.abstractmethod
    def report(self, conn: Any) -> SessionReport:
        """What the last invocation left in the session, read from memory only."""

    @abc.abstractmethod
    def rebase(self, conn: Any) -> None:
        """Take the session's current state as its clean state (after ``on_connect``)."""

    @abc.abstractmethod
    def mark(self, conn: Any, state: SessionState) -> None:
        """Add ``state`` to what the session is known to hold (``NONE`` clears)."""


class Driver(DriverBase):
    """One blocking database driver, as :class:`~fleetpool.Database` uses it.

    Imports the driver on construction.
    """

    #: Extra keyword arguments for the driver's connect call, set by integrations
    #: that need the driver configured their way (the Django backend: adapters,
    #: converters, client flags).
    connect_options: dict[str, Any]

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.connect_options = {}

    @abc.abstractmethod
    def connect(
        self,
        login: Login,
        *,
        autocommit: bool,
        tag: str,
        timeout: float,
        idle_timeout: float | None,
        statement_timeout: float | None,
    ) -> Any:
        """Open a tracked connection with the session timeouts set."""

    @abc.abstractmethod
    def rollback(self, conn: Any) -> None: ...

    @abc.abstractmethod
    def reset(self, conn: Any) -> None:
        """Return the session to its just-connected state (including the timeouts)."""

    @abc.abstractmethod
    def restore_client(self, conn: Any) -> None:
        """Restore client-side defaults (autocommit, row factory...) without a round trip."""

    @abc.abstractmethod
    def close(self, conn: Any) -> None:
        """Close, never raising."""

    @abc.abstractmethod
    def transaction(self, conn: Any) -> AbstractContextManager[Any]:
        """BEGIN ... COMMIT, or ROLLBACK when the block raises."""

    @abc.abstractmethod
    def fetch(self, conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one internal statement and return its rows."""


class AsyncDriver(DriverBase):
    """One asyncio database driver, as :class:`~fleetpool.AsyncDatabase` uses it.

    The same operations as :class:`Driver`; those that talk to the server are
    coroutines. Each is bounded by the caller (``asyncio.timeout``).
    """

    @abc.abstractmethod
    async def connect(
        self,
        login: Login,
        *,
        autocommit: bool,
        tag: str,
        timeout: float,
        idle_timeout: float | None,
        statement_timeout: float | None,
    ) -> Any:
        """Open a tracked connection with the session timeouts set."""

    @abc.abstractmethod
    async def rollback(self, conn: Any) -> None: ...

    @abc.abstractmethod
    async def reset(self, conn: Any) -> None:
        """Return the session to its just-connected state (including the timeouts)."""

    @abc.abstractmethod
    async def restore_client(self, conn: Any) -> None:
        """Restore client-side defaults (autocommit, row factory...)."""

    @abc.abstractmethod
    def close(self, conn: Any) -> None:
        """Close the socket at once, never raising, sending nothing (shutdown may call it)."""

    @abc.abstractmethod
    def transaction(self, conn: Any) -> AbstractAsyncContextManager[Any]:
        """BEGIN ... COMMIT, or ROLLBACK when the block raises."""

    @abc.abstractmethod
    async def fetch(
        self, conn: Any, sql: str, params: tuple[Any, ...] = ()
    ) -> list[tuple[Any, ...]]:
        """Run one internal statement and return its rows."""


__all__ = ["AsyncDriver", "Driver", "DriverBase", "cached_classifier", "socket_readable"]
