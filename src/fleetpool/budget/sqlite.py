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

Connections are per thread and per process (a connection must never cross a
``fork``; one inherited from a parent is kept referenced and never used or
closed, so SQLite's POSIX locks of the new connection are not dropped).

Waking waiters across processes: each waiting thread binds an AF_UNIX datagram
socket in ``<db>.wake/`` (or a short directory under the temp dir when that path
would exceed the socket path limit). A transaction that frees capacity while
live waiters exist sends one byte to every socket of the budget after it
commits; a socket whose owner died refuses the byte and is unlinked. A waiter
also wakes when the earliest lease runs out, like the memory backend.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import secrets
import socket
import sqlite3
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from ..backoff import SpreadJitterBackoff
from ..errors import BudgetUnavailable, ConfigError, LeaseLost
from ._base import AcquireRequest, AcquireResult, BudgetBackend, Lease, Snapshot
from ._policy import BudgetConfig
from ._state import Waiter, acquire_step

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

#: AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS), NUL included.
_SUN_PATH_MAX = 100
#: Length of a socket file name: "<budget hash 12>.<pid>.<thread id>.<random 6>".
_SOCK_NAME_MAX = 44

# Connections inherited from a parent process: kept alive, never used or closed
# (closing one would release the child's POSIX locks on the same file).
log = logging.getLogger("fleetpool.budget")

_INHERITED: list[object] = []


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def wake_dir(db_path: str) -> str:
    """The directory holding the budget's wake-up sockets (same rule in every process)."""
    real = os.path.realpath(db_path)
    beside = real + ".wake"
    if len(beside) + 1 + _SOCK_NAME_MAX <= _SUN_PATH_MAX:
        return beside
    digest = hashlib.sha256(real.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"fleetpool-{os.getuid()}-{digest}.wake")


class _Waker:
    """Cross-process wake-ups for one budget: datagram sockets in a directory."""

    def __init__(self, db_path: str, budget: str) -> None:
        self.dir = wake_dir(db_path)
        self.prefix = hashlib.sha256(budget.encode()).hexdigest()[:12] + "."
        self._sender: socket.socket | None = None
        self._sender_pid = 0
        self._lock = threading.Lock()

    def bind(self) -> tuple[socket.socket, str]:
        os.makedirs(self.dir, exist_ok=True)
        name = f"{self.prefix}{os.getpid()}.{threading.get_native_id()}.{secrets.token_hex(3)}"
        path = os.path.join(self.dir, name)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(path)
        except OSError:
            sock.close()
            raise
        return sock, path

    def notify(self) -> None:
        """Send one byte to every waiting socket of this budget (after a commit)."""
        try:
            names = [n for n in os.listdir(self.dir) if n.startswith(self.prefix)]
        except OSError:
            return
        if not names:
            return
        with self._lock:
            if self._sender is None or self._sender_pid != os.getpid():
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
                self._sender_pid = os.getpid()
            sender = self._sender
            for name in names:
                path = os.path.join(self.dir, name)
                try:
                    sender.sendto(b"!", path)
                except OSError as exc:
                    if exc.errno == errno.ECONNREFUSED:
                        # Nobody is bound there any more: its process died.
                        with contextlib.suppress(OSError):
                            os.unlink(path)
                    # EAGAIN: that waiter already has wake-ups queued; ENOENT: gone.

    def close(self) -> None:
        with self._lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None


@dataclass(eq=False)
class _PerThread:
    """One thread's connection and (once it waited) its wake-up socket.

    The finalizer closes both when the thread ends (its thread-local dies) or
    when the backend is closed; it holds the resources, never this object.
    """

    pid: int
    conn: sqlite3.Connection
    sock: socket.socket | None = None
    #: ``[socket, path]`` once bound; shared with the finalizer.
    sock_holder: list[Any] = field(default_factory=list)
    finalizer: Callable[[], object] | None = None
    #: Held while the connection is in use. ``close()`` on another thread takes
    #: it first: sqlite3 may crash the interpreter when a connection is closed
    #: under a statement running on it.
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False


def _cleanup(pid: int, conn: sqlite3.Connection, sock: list[Any]) -> None:
    if os.getpid() != pid:
        _INHERITED.append(conn)
        return
    with contextlib.suppress(sqlite3.Error):
        conn.close()
    if sock:
        s, path = sock
        s.close()
        with contextlib.suppress(OSError):
            os.unlink(path)


_BUSY_BACKOFF = SpreadJitterBackoff(base=0.0002, cap=0.025)


def _busy_pause(tries: int) -> None:
    """Sleep before retrying a locked database (``tries`` retries so far).

    A transaction holds the lock for well under a millisecond, so the first
    retries come soon; the pause doubles up to 25 ms (waiters that poll faster
    cost the writer CPU) and is jittered so that waiting processes do not retry
    in step.
    """
    time.sleep(_BUSY_BACKOFF.delay(tries + 1, secrets.randbelow(1000) / 1000))


class SQLiteBackend(BudgetBackend):
    kind = "sqlite"
    notifies = True

    def __init__(self, name: str, path: str, timeout: float = 2.0) -> None:
        super().__init__(name)
        if not path or path == ":memory:":
            raise ConfigError(
                f"sqlite budget needs a file path shared by the processes, got {path!r}"
            )
        self.path = os.path.abspath(os.path.expanduser(path))
        self.timeout = float(timeout)
        self._local = threading.local()
        self._waker = _Waker(self.path, name)
        self._registry: weakref.WeakSet[_PerThread] = weakref.WeakSet()
        self._registry_lock = threading.Lock()
        self._config_cache: tuple[str, BudgetConfig] | None = None

    # -- connections ----------------------------------------------------------

    def _thread(self) -> _PerThread:
        state: _PerThread | None = getattr(self._local, "state", None)
        if state is not None and state.pid == os.getpid():
            return state
        if state is not None:  # inherited across fork: keep, never touch
            _INHERITED.append(state.conn)
        state = _PerThread(os.getpid(), self._connect())
        fin = weakref.finalize(state, _cleanup, state.pid, state.conn, state.sock_holder)
        fin.atexit = False
        state.finalizer = fin
        with self._registry_lock:
            self._registry.add(state)
        self._local.state = state
        return state

    def _connect(self) -> sqlite3.Connection:
        deadline = time.monotonic() + self.timeout
        tries = 0
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        except OSError as exc:
            raise BudgetUnavailable(
                f"cannot create the directory of sqlite budget {self.path!r}: {exc}"
            ) from exc
        while True:
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=0.0,  # busy: fail at once, _run_locked retries (see above)
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
                return conn
            except sqlite3.Error as exc:
                # Switching to WAL and creating the schema need a brief exclusive
                # lock; several processes starting at once may meet here.
                if _is_busy(exc) and time.monotonic() < deadline:
                    _busy_pause(tries)
                    tries += 1
                    continue
                raise BudgetUnavailable(
                    f"sqlite budget {self.name!r} at {self.path!r} unavailable: {exc}"
                ) from exc

    def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """Run ``fn`` in one transaction; busy beyond the timeout -> BudgetUnavailable."""
        while True:
            state = self._thread()
            with state.lock:
                if not state.closed:  # else close() ran since _thread(): start afresh
                    return self._run_locked(state.conn, fn, write)

    def _run_locked(
        self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], write: bool
    ) -> T:
        deadline = time.monotonic() + self.timeout
        tries = 0
        while True:
            try:
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
            except sqlite3.Error as exc:
                if _is_busy(exc) and time.monotonic() < deadline:
                    _busy_pause(tries)
                    tries += 1
                    continue
                raise BudgetUnavailable(
                    f"sqlite budget {self.name!r} at {self.path!r} unavailable: {exc}"
                ) from exc

    def _config(self, conn: sqlite3.Connection) -> BudgetConfig:
        row = conn.execute(
            "SELECT config FROM fleetpool_config WHERE budget = ?", (self.name,)
        ).fetchone()
        if row is None:
            return BudgetConfig(limit=0)
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

    def try_acquire(self, request: AcquireRequest) -> AcquireResult:
        state = self._thread()
        if request.queue_for > 0 and state.sock is None:
            # Bind before the waiter row is written, so no wake-up can be missed.
            self._bind(state)
        elif state.sock is not None:
            self._drain(state.sock)  # older wake-ups: this transaction sees their effect
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

    def _bind(self, state: _PerThread) -> None:
        try:
            sock, path = self._waker.bind()
        except OSError:
            return  # no notification for this thread: the front's poll still works
        state.sock = sock
        state.sock_holder[:] = [sock, path]

    @staticmethod
    def _drain(sock: socket.socket) -> None:
        sock.setblocking(False)
        while True:
            try:
                sock.recv(64)
            except OSError:
                return

    def wait_for_change(self, timeout: float) -> None:
        timeout = max(0.0, timeout)
        try:
            state = self._thread()
            if state.sock is None:
                self._bind(state)

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
        sock = state.sock
        if sock is None:
            time.sleep(timeout)
            return
        if timeout <= 0:
            return
        sock.settimeout(timeout)
        try:
            sock.recv(64)
        except OSError:  # timeout
            return
        self._drain(sock)

    def close(self) -> None:
        """Close every thread's connection and socket (a later call reconnects)."""
        with self._registry_lock:
            states = list(self._registry)
            self._registry = weakref.WeakSet()
        self._local = threading.local()
        for state in states:
            # Wait for a call in flight on another thread (bounded by its own
            # timeout); one that still holds on is left to its finalizer.
            if not state.lock.acquire(timeout=self.timeout + 1.0):
                log.warning("sqlite budget %r: a connection stayed busy; not closing it", self.name)
                continue
            try:
                state.closed = True
                if state.finalizer is not None:
                    state.finalizer()
            finally:
                state.lock.release()
        self._waker.close()


__all__ = ["SQLiteBackend", "wake_dir"]
