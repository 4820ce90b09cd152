# Strategy: every pool decision is a pure function of plain numbers and ``now``.
# The pool (pool.py) gathers facts, calls these, then does the I/O they ask for; the
# unit tests call them directly with made-up clocks, no sockets and no mocks.
from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..backoff import EqualJitterBackoff
from ..client.decisions import RENEW_FRACTION


@dataclass(frozen=True, slots=True)
class IdleInfo:
    """What the policy needs to know about one idle server connection."""

    created: float
    idle_since: float
    expires: float  # created + max_lifetime, already jittered; inf when unlimited
    last_checked: float


def lifetime_deadline(created: float, max_lifetime: float, jitter: float, rand: float) -> float:
    """When a connection created at ``created`` must retire.

    ``rand`` in [0, 1) shortens the lifetime by up to ``jitter`` (a fraction) so that
    connections opened together do not all reconnect together.
    """
    if max_lifetime <= 0:
        return math.inf
    return created + max_lifetime * (1.0 - jitter * rand)


def reusable(info: IdleInfo, now: float) -> bool:
    """May an idle connection be handed to a client now (not past its lifetime)?"""
    return now < info.expires


def plan_idle(
    idle: Sequence[IdleInfo],
    now: float,
    *,
    total: int,
    min_idle: int,
    idle_timeout: float,
    max_size: int,
    health_check_interval: float,
) -> tuple[list[int], list[int], int]:
    """Decide maintenance for the idle list.

    ``idle`` is ordered oldest-used first. Returns ``(close, check, open)``: indices
    of idle connections to close (past lifetime, or idle past ``idle_timeout`` while
    more than ``min_idle`` remain), indices to health-check (idle and not checked for
    ``health_check_interval``), and how many new connections to open so that
    ``min_idle`` idle connections exist without exceeding ``max_size``.
    """
    expired = {i for i, info in enumerate(idle) if now >= info.expires}
    close: list[int] = []
    check: list[int] = []
    remaining = len(idle) - len(expired)
    for i, info in enumerate(idle):
        if i in expired:
            close.append(i)
        elif idle_timeout > 0 and now - info.idle_since >= idle_timeout and remaining > min_idle:
            close.append(i)
            remaining -= 1
        elif health_check_interval > 0 and now - info.last_checked >= health_check_interval:
            check.append(i)
    live_total = total - len(close)
    want = max(0, min_idle - remaining)
    room = max(0, max_size - live_total)
    return close, check, min(want, room)


def effective_pool_size(
    pool_size: int, max_connections_percent: float | None, server_max_connections: int | None
) -> int:
    """The pool's cap: ``pool_size``, or a percentage of the server's max_connections."""
    if max_connections_percent is None or not server_max_connections:
        return pool_size
    return max(1, int(server_max_connections * max_connections_percent / 100.0))


def split_pool_size(total: int, workers: int, index: int) -> int:
    """Share ``total`` server connections between ``workers`` processes fairly."""
    base, extra = divmod(total, workers)
    return max(1, base + (1 if index < extra else 0))


# Reconnect attempts while clients wait: equal jitter, 0.1 s growing to 2 s.
RECONNECT_BACKOFF = EqualJitterBackoff(base=0.1, cap=2.0)


def retry_delay(attempt: int, rand: float) -> float:
    """Seconds before reconnect attempt ``attempt`` (0-based), ``rand`` in [0, 1)."""
    return RECONNECT_BACKOFF.delay(attempt + 1, rand)


# -- returning a server connection ------------------------------------------------------


class Release(enum.Enum):
    """What to do with a server connection handed back to the pool (value: why)."""

    BROKEN = "released while broken or busy"  # close it
    EXPIRED = "max_lifetime reached"  # close it
    DRAINING = "shutting down"  # close it
    YIELD = "room for a pool whose clients waited longer"  # close it
    STATEMENTS = "max_prepared_statements reached"  # drop its prepared statements first
    HAND_OVER = "hand over"  # straight to the oldest waiting client
    IDLE = "idle"


def plan_release(
    alive: bool,
    busy: bool,
    now: float,
    expires: float,
    draining: bool,
    waiters: int,
    paused: bool,
    prepared: int,
    max_prepared: int,
    yield_to_other: bool,
    /,
) -> Release:
    """Decide the fate of a server connection that just became free.

    ``yield_to_other``: pools share a cap that is reached, and another pool's oldest
    waiting client waited longer than this pool's: the connection is closed so that
    pool can open one (first come, first served across pools).
    (Positional arguments: it runs once per transaction.)
    """
    if not alive or busy:
        return Release.BROKEN
    if now >= expires:
        return Release.EXPIRED
    if draining and not waiters:
        return Release.DRAINING
    if yield_to_other:
        return Release.YIELD
    if prepared > max_prepared:
        return Release.STATEMENTS
    if waiters and not paused:
        return Release.HAND_OVER
    return Release.IDLE


class GiveBack(enum.Enum):
    """How a client that no longer needs its server connection returns it."""

    RELEASE = "release"  # clean: straight back to the pool
    ROLLBACK = "rollback"  # a transaction is open: roll it back first
    RESET = "reset"  # session state left behind: run the reset first
    CLOSE = "close"
    GONE = "gone"  # the connection is already dead


def plan_give_back(
    *,
    alive: bool,
    busy: bool,
    session_state: bool,
    in_transaction: bool,
    can_reset: bool,
) -> tuple[GiveBack, str]:
    """Decide how a server connection comes back when its client is done with it.

    ``session_state``: the client was pinned or in session mode, so the session may hold
    its state; ``can_reset``: a reset undoes that state (false without a reset query,
    or for state no reset removes, such as a loaded library).
    """
    if not alive:
        return GiveBack.GONE, ""
    if busy:
        return GiveBack.CLOSE, "client disconnected with a request in flight"
    if session_state:
        if can_reset:
            return GiveBack.RESET, ""
        return GiveBack.CLOSE, "session state left behind that no reset removes"
    if in_transaction:
        return GiveBack.ROLLBACK, ""
    return GiveBack.RELEASE, ""


def should_renew(remaining: float, ttl: float) -> bool:
    """Renew a server connection's budget lease once less than half its TTL remains
    (the rule the client library applies to its own lease)."""
    return remaining < ttl * RENEW_FRACTION


def waiters_expired(started: list[float], now: float, limit: float) -> int:
    """How many of the oldest waiters (``started`` in queue order) waited ``limit``."""
    count = 0
    for t in started:
        if now - t < limit:
            break
        count += 1
    return count
