"""Close connections and release leases when the container is told to stop.

Strategy: a Lambda container gets SIGTERM (when extensions are registered) or
simply exits; either way the lease should come back to the fleet now rather
than at its expiry, and the server session should end rather than wait for its
idle timeout. Every ``Database`` that has connected registers here (weakly). On
SIGTERM the handler closes them all, then hands over to whatever handler was
installed before -- calling it, or re-raising the signal with the default
action -- so fleetpool never swallows a shutdown. ``atexit`` covers a normal
interpreter exit. Each close is bounded (see ``Database.close(timeout=)``).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import weakref
from types import FrameType
from typing import Any, Protocol

log = logging.getLogger("fleetpool.client")

#: Seconds one Database may spend closing during shutdown.
SHUTDOWN_TIMEOUT = 0.3


class Closable(Protocol):
    def close(self, timeout: float | None = None) -> None: ...


_registry: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
_atexit_installed = False
_sigterm_installed = False
_previous: Any = signal.SIG_DFL


def close_all(timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """Close every registered Database (best effort, never raises)."""
    for db in list(_registry):
        try:
            db.close(timeout=timeout)
        except Exception:  # shutting down: report and go on with the others
            log.exception("fleetpool: closing %r at shutdown failed", db)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    close_all()
    previous = _previous
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        # Restore the default action and deliver the signal again: the process
        # ends exactly as it would have without fleetpool.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    # SIG_IGN: the application chose to ignore SIGTERM; so do we, after closing.


def register(db: Closable, *, signals: bool = True) -> None:
    """Register ``db`` for closing at exit and, from the main thread, on SIGTERM."""
    global _atexit_installed, _sigterm_installed, _previous
    with _lock:
        _registry.add(db)
        if not _atexit_installed:
            atexit.register(close_all)
            _atexit_installed = True
        if (
            signals
            and not _sigterm_installed
            and threading.current_thread() is threading.main_thread()
        ):
            try:
                current = signal.getsignal(signal.SIGTERM)
                if current is not _on_sigterm:
                    _previous = current if current is not None else signal.SIG_DFL
                    signal.signal(signal.SIGTERM, _on_sigterm)
                _sigterm_installed = True
            except (ValueError, OSError):  # not allowed here (embedded interpreter)
                pass


def unregister(db: Closable) -> None:
    with _lock:
        _registry.discard(db)


__all__ = ["SHUTDOWN_TIMEOUT", "close_all", "register", "unregister"]
