# Strategy: every pool decision is a pure function of plain numbers and ``now``.
# The pool (pool.py) gathers facts, calls these, then does the I/O they ask for; the
# unit tests call them directly with made-up clocks, no sockets and no mocks.
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


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


def retry_delay(attempt: int, rand: float, base: float = 0.1, cap: float = 2.0) -> float:
    """Equal-jitter exponential backoff for reconnect attempts."""
    ceiling = min(cap, base * 2.0 ** min(attempt, 30))
    return ceiling / 2 + rand * ceiling / 2
