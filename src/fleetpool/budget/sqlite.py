"""SQLite budget backend: many processes on one host share one database file.

Strategy: SQLite already serialises writers across processes, so every state
change is one ``BEGIN IMMEDIATE`` transaction that reads the budget's leases and
waiters, decides with the shared pure step (:func:`._state.acquire_step`, the
same one the memory backend uses) and writes the outcome back. The write lock is
taken before the clock is read, so decisions are totally ordered. WAL mode lets
readers (snapshots, ``leases()``) run beside a writer; ``synchronous=NORMAL`` is
enough because a lost tail of the WAL after a power cut only loses leases that
would have expired anyway. The store timeout bounds the wait for the write lock:
a file locked for longer than that raises :class:`BudgetUnavailable`, never a
hang. That wait is fleetpool's own retry loop with short jittered sleeps, not
SQLite's busy handler, whose sleeps grow to 100 ms: with several busy writer
processes a waiter that sleeps that long keeps missing the moments the lock is
free and could starve past the timeout (seen with 8 processes on 2 CPUs).

Connections are per thread and per process (:mod:`._per_thread`: a connection
never crosses a ``fork``, and one inherited from a parent is never closed, so
SQLite's POSIX locks of the new connection are not dropped).

Waking waiters across processes (:mod:`._wake_unix`): each waiting thread binds
an AF_UNIX datagram socket beside the database; a transaction that frees
capacity while live waiters exist sends one byte to every socket of the budget
after it commits. A waiter also wakes when the earliest lease runs out, like
the memory backend.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import secrets
import socket
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ..backoff import SpreadJitterBackoff
from ..errors import BudgetUnavailable, ConfigError, LeaseLost, NotConfigured
from ._base import AcquireRequest, AcquireResult, BudgetBackend, Lease, Snapshot
from ._per_thread import PerThread
from ._policy import UNCONFIGURED, BudgetConfig
from ._state import Waiter, acquire_step
from ._wake_unix import Waker, drain, unbind, wait, wake_dir

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleetpool_config (
    budget TEXT PRIMARY KEY,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS fleetpool_leases (
    id TEXT PRIMARY KEY,
    budget TEXT NOT NULL,
    function TEXT NOT NULL,
    holder TEXT NOT NULL,
    acquired_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    meta TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fleetpool_leases_by_budget
    ON fleetpool_leases (budget, expires_at);
CREATE TABLE IF NOT EXISTS fleetpool_waiters (
    ticket TEXT PRIMARY KEY,
    budget TEXT NOT NULL,
    function TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS fleetpool_waiters_by_budget
    ON fleetpool_waiters (budget, expires_at);
"""

log = logging.getLogger("fleetpool.budget")


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


@dataclass(eq=False)
class _Handles:
    """One thread's connection and, once it waited, its wake-up socket and path."""

    conn: sqlite3.Connection
    sock: socket.socket | None = None
    path: str = ""


def _close_handles(handles: _Handles) -> None:
    with contextlib.suppress(sqlite3.Error):
        handles.conn.close()
    if handles.sock is not None:
        unbind(handles.sock, handles.path)


_BUSY_BACKOFF = SpreadJitterBackoff(base=0.0002, cap=0.025)


def _busy_pause(tries: int) -> None:
    """Sleep before retrying a locked database (``tries`` retries so far).

    A transaction holds the lock for well under a millisecond, so the first
    retries come soon; the pause doubles up to 25 ms (waiters that poll faster
    cost the writer CPU) and is jittered so that waiting processes do not retry
    in step.
    """
    time.sleep(_BUSY_BACKOFF.delay(tries + 1, secrets.randbelow(1000) / 1000))


def _while_busy(attempt: Callable[[], T], timeout: float, name: str, path: str) -> T:
    """Run ``attempt`` again while the database is locked, for up to ``timeout`` seconds.

    Any other SQLite error, or a lock held past the timeout, is BudgetUnavailable.
    """
    deadline = time.monotonic() + timeout
    tries = 0
    while True:
        try:
            return attempt()
        except sqlite3.Error as exc:
            if _is_busy(exc) and time.monotonic() < deadline:
                _busy_pause(tries)
                tries += 1
                continue
            raise BudgetUnavailable(
                f"sqlite budget {name!r} at {path!r} unavailable: {exc}"
            ) from exc


def _open_handles(path: str, timeout: float, name: str, create: bool = True) -> _Handles:
    """A new connection to the budget file (schema created, WAL mode on).

    With ``create`` false the file must exist and hold fleetpool's tables: nothing is
    written to make it (read-only commands must not leave a store behind).
    """
    if not create:
        return _while_busy(lambda: _open_existing(path), timeout, name, path)
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    except OSError as exc:
        raise BudgetUnavailable(
            f"cannot create the directory of sqlite budget {path!r}: {exc}"
        ) from exc

    def connect() -> _Handles:
        conn = sqlite3.connect(
            path,
            timeout=0.0,  # busy: fail at once, _while_busy retries (see above)
            isolation_level=None,
            check_same_thread=False,
            cached_statements=64,
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
        except BaseException:
            conn.close()
            raise
        return _Handles(conn)

    # Switching to WAL and creating the schema need a brief exclusive lock;
    # several processes starting at once may meet here.
    return _while_busy(connect, timeout, name, path)


def _open_existing(path: str) -> _Handles:
    url = "sqlite:///" + path.lstrip("/")
    missing = NotConfigured(
        f"no budget store at {path}: 'fleetpool budget set NAME --store {url} --limit N' creates it"
    )
    if not os.path.isfile(path):
        raise missing
    conn = sqlite3.connect(
        # "file:" + a path starting "//" would read as a host: one leading slash.
        f"file:{urllib.parse.quote('/' + path.lstrip('/'))}?mode=rw",
        uri=True,
        timeout=0.0,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=64,
    )
    try:
        found = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name IN "
            "('fleetpool_config', 'fleetpool_leases', 'fleetpool_waiters')"
        ).fetchone()
    except BaseException:
        conn.close()
        raise
    if found[0] != 3:
        conn.close()
        raise missing
    return _Handles(conn)


class SQLiteBackend(BudgetBackend):
    kind = "sqlite"
    notifies = True

    def __init__(self, name: str, path: str, timeout: float = 2.0, create: bool = True) -> None:
        super().__init__(name)
        if not path or path == ":memory:":
            raise ConfigError(
                f"sqlite budget needs a file path shared by the processes, got {path!r}"
            )
        self.path = os.path.abspath(os.path.expanduser(path))
        self.timeout = float(timeout)
        # The factory holds the settings, not the backend: no reference cycle.
        self._threads = PerThread(
            functools.partial(_open_handles, self.path, self.timeout, name, create),
            _close_handles,
        )
        self._waker = Waker(self.path, name)
        self._config_cache: tuple[str, BudgetConfig] | None = None

    # -- connections ----------------------------------------------------------

    def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """Run ``fn`` in one transaction; busy beyond the timeout -> BudgetUnavailable."""
        while True:
            slot = self._threads.get()
            with slot.lock:
                if not slot.closed:  # else close() ran since get(): start afresh
                    return self._run_locked(slot.value.conn, fn, write)

    def _run_locked(
        self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], write: bool
    ) -> T:
        def transaction() -> T:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
                return result
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

        return _while_busy(transaction, self.timeout, self.name, self.path)

    def _config(self, conn: sqlite3.Connection) -> BudgetConfig:
        row = conn.execute(
            "SELECT config FROM fleetpool_config WHERE budget = ?", (self.name,)
        ).fetchone()
        if row is None:
            return UNCONFIGURED
        text: str = row[0]
        cached = self._config_cache
        if cached is not None and cached[0] == text:
            return cached[1]
        config = BudgetConfig.from_json(text)
        self._config_cache = (text, config)
        return config

    def _has_waiters(self, conn: sqlite3.Connection, now: float, besides: str | None) -> bool:
        row = conn.execute(
            "SELECT 1 FROM fleetpool_waiters WHERE budget = ? AND expires_at > ? "
            "AND ticket != ? LIMIT 1",
            (self.name, now, besides or ""),
        ).fetchone()
        return row is not None

    # -- the interface ----------------------------------------------------------

    def configure(self, config: BudgetConfig) -> None:
        text = config.to_json()

        def tx(conn: sqlite3.Connection) -> bool:
            conn.execute(
                "INSERT INTO fleetpool_config (budget, config) VALUES (?, ?) "
                "ON CONFLICT (budget) DO UPDATE SET config = excluded.config",
                (self.name, text),
            )
            return self._has_waiters(conn, time.time(), None)

        if self._run(tx):
            self._waker.notify()

    def get_config(self) -> BudgetConfig:
        return self._run(self._config, write=False)

    def budget_names(self) -> list[str]:
        def tx(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute("SELECT budget FROM fleetpool_config ORDER BY budget")
            return [str(name) for (name,) in rows.fetchall()]

        return self._run(tx, write=False)

    def try_acquire(self, request: AcquireRequest) -> AcquireResult:
        handles = self._threads.get().value
        if request.queue_for > 0 and handles.sock is None:
            # Bind before the waiter row is written, so no wake-up can be missed.
            self._bind(handles)
        elif handles.sock is not None:
            drain(handles.sock)  # older wake-ups: this transaction sees their effect
        name = self.name

        def tx(conn: sqlite3.Connection) -> tuple[AcquireResult, bool]:
            now = time.time()
            config = self._config(conn)
            leases = [
                Lease(id=i, budget=name, function=f, holder="", acquired_at=0.0, expires_at=e)
                for i, f, e in conn.execute(
                    "SELECT id, function, expires_at FROM fleetpool_leases WHERE budget = ?",
                    (name,),
                )
            ]
            waiters = [
                Waiter(ticket=t, function=f, enqueued_at=q, expires_at=e)
                for t, f, q, e in conn.execute(
                    "SELECT ticket, function, enqueued_at, expires_at "
                    "FROM fleetpool_waiters WHERE budget = ?",
                    (name,),
                )
            ]
            step = acquire_step(name, config, leases, waiters, request, now, request.lease_id)
            if step.expired:
                conn.executemany(
                    "DELETE FROM fleetpool_leases WHERE id = ?", [(i,) for i in step.expired]
                )
            if step.expired_waiters:
                conn.executemany(
                    "DELETE FROM fleetpool_waiters WHERE ticket = ?",
                    [(t,) for t in step.expired_waiters],
                )
            lease = step.lease
            if lease is not None:
                conn.execute(
                    "INSERT INTO fleetpool_leases "
                    "(id, budget, function, holder, acquired_at, expires_at, meta) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        lease.id,
                        name,
                        lease.function,
                        lease.holder,
                        lease.acquired_at,
                        lease.expires_at,
                        json.dumps(dict(lease.meta), separators=(",", ":")),
                    ),
                )
            if step.waiter is not None:
                w = step.waiter
                conn.execute(
                    "INSERT INTO fleetpool_waiters "
                    "(ticket, budget, function, enqueued_at, expires_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (ticket) DO UPDATE SET expires_at = excluded.expires_at, "
                    "enqueued_at = excluded.enqueued_at, function = excluded.function",
                    (w.ticket, name, w.function, w.enqueued_at, w.expires_at),
                )
            elif request.ticket:
                conn.execute("DELETE FROM fleetpool_waiters WHERE ticket = ?", (request.ticket,))
            wake = bool(step.expired) and any(
                w.expires_at > now and w.ticket != request.ticket for w in waiters
            )
            result = AcquireResult(
                lease=lease,
                reason=step.decision.reason,
                limit=config.limit,
                in_use=step.in_use,
                ticket=step.waiter.ticket if step.waiter else None,
                reclaimed=len(step.expired),
            )
            return result, wake

        try:
            result, wake = self._run(tx)
        except TypeError as exc:  # meta that JSON cannot hold
            raise ConfigError(f"lease meta must be JSON-serialisable: {exc}") from exc
        if wake:
            self._waker.notify()
        return result

    def renew(self, lease: Lease, ttl: float) -> Lease:
        def tx(conn: sqlite3.Connection) -> float | None:
            now = time.time()
            cur = conn.execute(
                "UPDATE fleetpool_leases SET expires_at = ? "
                "WHERE id = ? AND budget = ? AND expires_at > ?",
                (now + ttl, lease.id, self.name, now),
            )
            if cur.rowcount == 1:
                return now + ttl
            conn.execute(
                "DELETE FROM fleetpool_leases WHERE id = ? AND budget = ? AND expires_at <= ?",
                (lease.id, self.name, now),
            )
            return None

        expires_at = self._run(tx)
        if expires_at is None:
            raise LeaseLost.of(lease)
        return replace(lease, expires_at=expires_at)

    def annotate(self, lease: Lease, meta: Mapping[str, Any]) -> Lease:
        def tx(conn: sqlite3.Connection) -> Lease | None:
            row = conn.execute(
                "SELECT meta, expires_at FROM fleetpool_leases "
                "WHERE id = ? AND budget = ? AND expires_at > ?",
                (lease.id, self.name, time.time()),
            ).fetchone()
            if row is None:
                return None
            merged = {**json.loads(row[0]), **meta}
            conn.execute(
                "UPDATE fleetpool_leases SET meta = ? WHERE id = ?",
                (json.dumps(merged, separators=(",", ":")), lease.id),
            )
            return replace(lease, meta=merged, expires_at=float(row[1]))

        try:
            annotated = self._run(tx)
        except TypeError as exc:  # meta that JSON cannot hold
            raise ConfigError(f"lease meta must be JSON-serialisable: {exc}") from exc
        if annotated is None:
            raise LeaseLost.of(lease)
        return annotated

    def release(self, lease: Lease) -> bool:
        def tx(conn: sqlite3.Connection) -> tuple[bool, bool]:
            now = time.time()
            row = conn.execute(
                "DELETE FROM fleetpool_leases WHERE id = ? AND budget = ? RETURNING expires_at",
                (lease.id, self.name),
            ).fetchone()
            live = row is not None and row[0] > now
            return live, live and self._has_waiters(conn, now, None)

        live, wake = self._run(tx)
        if wake:
            self._waker.notify()
        return live

    def cancel_wait(self, ticket: str) -> None:
        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM fleetpool_waiters WHERE ticket = ? AND budget = ?",
                (ticket, self.name),
            )
            return cur.rowcount > 0 and self._has_waiters(conn, time.time(), None)

        if self._run(tx):
            self._waker.notify()

    def leases(self) -> list[Lease]:
        def tx(conn: sqlite3.Connection) -> list[Lease]:
            rows = conn.execute(
                "SELECT id, function, holder, acquired_at, expires_at, meta "
                "FROM fleetpool_leases WHERE budget = ? AND expires_at > ? "
                "ORDER BY acquired_at, id",
                (self.name, time.time()),
            ).fetchall()
            return [
                Lease(
                    id=i,
                    budget=self.name,
                    function=f,
                    holder=h,
                    acquired_at=a,
                    expires_at=e,
                    meta=json.loads(m),
                )
                for i, f, h, a, e, m in rows
            ]

        return self._run(tx, write=False)

    def snapshot(self) -> Snapshot:
        def tx(conn: sqlite3.Connection) -> Snapshot:
            now = time.time()
            config = self._config(conn)
            counts: dict[str, int] = dict(
                conn.execute(
                    "SELECT function, COUNT(*) FROM fleetpool_leases "
                    "WHERE budget = ? AND expires_at > ? GROUP BY function",
                    (self.name, now),
                ).fetchall()
            )
            (waiting,) = conn.execute(
                "SELECT COUNT(*) FROM fleetpool_waiters WHERE budget = ? AND expires_at > ?",
                (self.name, now),
            ).fetchone()
            return Snapshot.from_counts(self.name, config, counts, int(waiting))

        return self._run(tx, write=False)

    # -- waiting ----------------------------------------------------------------

    def _bind(self, handles: _Handles) -> None:
        try:
            handles.sock, handles.path = self._waker.bind()
        except OSError:
            return  # no notification for this thread: the front's poll still works

    def wait_for_change(self, timeout: float) -> None:
        timeout = max(0.0, timeout)
        try:
            handles = self._threads.get().value
            if handles.sock is None:
                self._bind(handles)

            def soonest(conn: sqlite3.Connection) -> float | None:
                row = conn.execute(
                    "SELECT MIN(expires_at) FROM fleetpool_leases WHERE budget = ?",
                    (self.name,),
                ).fetchone()
                return None if row is None or row[0] is None else float(row[0])

            earliest = self._run(soonest, write=False)
        except BudgetUnavailable:
            time.sleep(timeout)
            return
        if earliest is not None:
            # An expiring lease frees capacity without anyone calling release.
            timeout = max(0.0, min(timeout, earliest - time.time() + 0.001))
        if handles.sock is None:
            time.sleep(timeout)
            return
        wait(handles.sock, timeout)

    def close(self) -> None:
        """Close every thread's connection and socket (a later call reconnects)."""
        # Waits for a call in flight on another thread (bounded by its own
        # timeout); one that still holds on is left to its finalizer.
        if self._threads.close_all(timeout=self.timeout + 1.0):
            log.warning("sqlite budget %r: a connection stayed busy; not closing it", self.name)
        self._waker.close()


__all__ = ["SQLiteBackend", "wake_dir"]
