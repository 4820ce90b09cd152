"""One resource per thread and per process, for the backends that keep their own connections.

Strategy: a budget call is one short round trip, so the SQLite and Redis
backends give each thread its own connection (and wake-up socket or
subscription) instead of borrowing from a pool under a lock. Three rules come
with that, written once here:

* per process -- a connection must never cross a ``fork``. A thread that finds
  its parent's resource makes a new one; the inherited one is kept referenced
  and never used or closed (closing a SQLite connection inherited from the
  parent would drop the child's POSIX locks on the same file).
* per thread -- a thread's resource is closed when the backend closes, or, with
  ``close_with_thread``, by a finalizer as soon as the thread ends (its
  thread-local slot dies); without it the resource stays open until the
  backend closes (a Redis subscription is kept for the thread's next wait).
* close waits for calls in flight -- each slot has a lock that a caller may
  hold while it uses the resource; :meth:`PerThread.close_all` takes it before
  closing (sqlite3 may crash the interpreter when a connection is closed under a
  running statement), bounded by a timeout.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

R = TypeVar("R")

# Resources inherited from a parent process: kept alive, never used or closed.
_INHERITED: list[object] = []


@dataclass(eq=False)
class Slot(Generic[R]):
    """One thread's resource in one process."""

    pid: int
    value: R
    #: Held while the resource is in use; :meth:`PerThread.close_all` takes it first.
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Set under ``lock`` when the backend closed the resource: make a new slot.
    closed: bool = False
    finalizer: Callable[[], object] | None = None


def _finish(pid: int, value: R, close: Callable[[R], object]) -> None:
    # Holds the value and the close function, never the slot: the slot's death
    # (its thread ended) is what runs this.
    if os.getpid() != pid:
        _INHERITED.append(value)
        return
    close(value)


class PerThread(Generic[R]):
    """Resources made by ``make`` on first use in each thread, closed by ``close``."""

    def __init__(
        self,
        make: Callable[[], R],
        close: Callable[[R], object],
        *,
        close_with_thread: bool = True,
    ) -> None:
        self._make = make
        self._close = close
        self._local = threading.local()
        self._slots: weakref.WeakSet[Slot[R]] = weakref.WeakSet()
        #: Slots kept alive after their thread ended (``close_with_thread=False``).
        self._kept: list[Slot[R]] | None = None if close_with_thread else []
        self._lock = threading.Lock()

    def get(self) -> Slot[R]:
        """This thread's slot in this process, made now if there is none."""
        slot: Slot[R] | None = getattr(self._local, "slot", None)
        if slot is not None and slot.pid == os.getpid():
            return slot
        if slot is not None:  # inherited across fork: keep, never touch
            _INHERITED.append(slot.value)
        slot = Slot(os.getpid(), self._make())
        fin = weakref.finalize(slot, _finish, slot.pid, slot.value, self._close)
        fin.atexit = False
        slot.finalizer = fin
        with self._lock:
            self._slots.add(slot)
            if self._kept is not None:
                self._kept.append(slot)
        self._local.slot = slot
        return slot

    def peek(self) -> Slot[R] | None:
        """This thread's slot in this process, or None (nothing is made)."""
        slot: Slot[R] | None = getattr(self._local, "slot", None)
        return slot if slot is not None and slot.pid == os.getpid() else None

    def close_all(self, timeout: float) -> int:
        """Close every thread's resource; later calls make new ones.

        Waits up to ``timeout`` for a call in flight on each slot; a slot still
        busy then is left to its finalizer. Returns how many were left.
        """
        with self._lock:
            slots = list(self._slots)
            self._slots = weakref.WeakSet()
            if self._kept is not None:
                self._kept = []
        self._local = threading.local()
        busy = 0
        for slot in slots:
            if not slot.lock.acquire(timeout=timeout):
                busy += 1
                continue
            try:
                slot.closed = True
                if slot.finalizer is not None:
                    slot.finalizer()
            finally:
                slot.lock.release()
        return busy


__all__ = ["PerThread", "Slot"]
