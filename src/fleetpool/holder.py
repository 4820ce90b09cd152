"""Who holds a lease by default: this process, as ``host:pid``.

Kept apart from the budget package so that building a ``Database`` in a
function's global section does not import the budget (or ``socket``) before the
first connection needs them.
"""

from __future__ import annotations

import os

_holder: str | None = None


def _forget_holder() -> None:
    global _holder
    _holder = None


os.register_at_fork(after_in_child=_forget_holder)


def _hostname() -> str:
    if hasattr(os, "uname"):  # the same name gethostname() returns, without importing socket
        return os.uname().nodename
    import socket

    return socket.gethostname()


def default_holder() -> str:
    """``host:pid``, built once per process (two system calls per acquire otherwise)."""
    global _holder
    if _holder is None:
        _holder = f"{_hostname()}:{os.getpid()}"
    return _holder


__all__ = ["default_holder"]
