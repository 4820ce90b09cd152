"""The Redis backend on the wire: RESP packing and the private connections it sends on.

Strategy: a budget call is one short command and one reply, so the backend
packs its arguments itself (a fixed head packed once per backend plus a few
short strings, joined) and sends them on a connection of its own per thread,
built from the client's pool settings but outside the pool, whose bookkeeping
(a lock, a readiness poll, telemetry) costs about as much as a loopback round
trip. That leans on a few redis-py internals, all named in
:data:`REDIS_PY_INTERNALS` and used only here; a test fails loudly when a
redis-py release changes them (the ``redis`` extra pins the tested range).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

#: What this module relies on beyond redis-py's public API, by class.
REDIS_PY_INTERNALS = {
    "ConnectionPool": ("connection_class", "connection_kwargs"),
    "Connection": ("send_packed_command", "read_response", "send_command", "disconnect", "_sock"),
}


def connect(pool: Any) -> Any:
    """A new connection with ``pool``'s class and settings, not borrowed from it.

    No I/O: it connects on the first command.
    """
    return pool.connection_class(**pool.connection_kwargs)


def round_trip(conn: Any, packed: bytes) -> Any:
    """Send one packed command and read its reply."""
    if conn._sock is None:
        # Connect through the class's own connect(): a Sentinel-managed connection
        # asks the sentinels for the primary there (sending would connect to the
        # constructor's default address instead).
        conn.connect()
    conn.send_packed_command((packed,))
    return conn.read_response()


compact = json.JSONEncoder(separators=(",", ":")).encode


def pack_args(items: Sequence[str | bytes], total: int | None = None) -> bytes:
    """RESP bulk strings for the ``str`` items, after an array header of ``total`` if given.

    ``bytes`` items are arguments packed earlier and are copied as they are.
    The budget's commands are a fixed head (FCALL, function, keys: packed once
    per backend) and a few short arguments, so packing them here is a join, not
    redis-py's general encoder for every argument of every call.
    """
    parts = [] if total is None else [b"*%d\r\n" % total]
    for item in items:
        if isinstance(item, bytes):
            parts.append(item)
        else:
            raw = item.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


def as_str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


#: Ticket '', queue_for 0, new ticket '': the arguments of an acquire that will not wait.
NO_WAITING = b"$0\r\n\r\n$1\r\n0\r\n$0\r\n\r\n"


def micros(seconds: float) -> str:
    """Whole microseconds, the unit of every time the Lua code handles."""
    return str(round(seconds * 1_000_000))


def sha1(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


def is_unknown_command(exc: Exception) -> bool:
    return str(exc).lower().startswith("unknown command")


def is_missing_code(exc: Exception) -> bool:
    """The server lacks our Lua: NOSCRIPT, an unloaded function, or no FCALL at all.

    Redis reports these only as text (``NOSCRIPT`` is its own error type in
    redis-py); the three messages are stable across Redis and Valkey versions.
    """
    if type(exc).__name__ in ("NoScriptError", "NoPermissionError"):
        # NOPERM: an ACL that allows EVALSHA but not FCALL; the EVALSHA path is tried.
        return True
    text = str(exc).lower()
    return text.startswith("function not found") or is_unknown_command(exc)


__all__ = [
    "NO_WAITING",
    "REDIS_PY_INTERNALS",
    "as_str",
    "compact",
    "connect",
    "is_missing_code",
    "is_unknown_command",
    "micros",
    "pack_args",
    "round_trip",
    "sha1",
]
