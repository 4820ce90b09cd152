"""A child process that dies with its parent (Linux ``PR_SET_PDEATHSIG``).

Used where fleetpool starts long-lived children of its own: the proxy's forked
workers and the demo's proxy. The kernel sends the signal when the *thread* that
created the child ends, so call it in children started from a thread that lives
as long as they should (the main thread, in both uses).
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In the child (a ``preexec_fn``, or right after ``fork``): receive ``sig`` when the
    parent dies. A no-op where ``prctl`` is missing."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


__all__ = ["die_with_parent"]
