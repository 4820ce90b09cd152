"""One acquire step over plain Python state, shared by the backends that decide in Python.

Strategy: memory, SQLite and DynamoDB all read the whole budget (leases and
waiters) inside a transaction, decide, and write back. This module is that
"decide" step: pure, taking ``now`` and the id a new waiter would get (drawing
it is the caller's business, so the step has no randomness), returning what to
write. The Redis Lua script mirrors it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ._base import AcquireRequest, Lease
from ._policy import BudgetConfig, Decision, admit


@dataclass(frozen=True)
class Waiter:
    ticket: str
    function: str
    enqueued_at: float
    expires_at: float


@dataclass(frozen=True)
class Step:
    """The outcome of one acquire attempt, and the writes it implies."""

    decision: Decision
    lease: Lease | None
    #: Waiter to insert or refresh (None: remove the caller's ticket, if any).
    waiter: Waiter | None
    in_use: int
    expired: list[str]
    expired_waiters: list[str]


def live(leases: Iterable[Lease], now: float) -> list[Lease]:
    return [lease for lease in leases if lease.expires_at > now]


def in_use_by_function(leases: Iterable[Lease]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for lease in leases:
        counts[lease.function] = counts.get(lease.function, 0) + 1
    return counts


def acquire_step(
    budget: str,
    config: BudgetConfig,
    leases: Iterable[Lease],
    waiters: Iterable[Waiter],
    request: AcquireRequest,
    now: float,
    new_ticket: str,
) -> Step:
    """Decide one attempt at ``now``; a refused caller without a ticket queues as ``new_ticket``.

    The backends pass ``request.lease_id``: randomness already drawn for this
    acquire, and waiters never share a table or map with leases.
    """
    all_leases = list(leases)
    all_waiters = list(waiters)
    current = [x for x in all_leases if x.expires_at > now]
    expired = [x.id for x in all_leases if x.expires_at <= now]
    live_waiters = [w for w in all_waiters if w.expires_at > now]
    expired_waiters = [w.ticket for w in all_waiters if w.expires_at <= now]
    mine = next((w for w in live_waiters if w.ticket == request.ticket), None)
    if mine is None:
        ahead = [w.function for w in live_waiters]
    else:
        key = (mine.enqueued_at, mine.ticket)
        ahead = [w.function for w in live_waiters if (w.enqueued_at, w.ticket) < key]
    counts = in_use_by_function(current)
    decision = admit(config, counts, request.function, ahead)
    if decision.granted:
        lease = Lease(
            id=request.lease_id,
            budget=budget,
            function=request.function,
            holder=request.holder,
            acquired_at=now,
            expires_at=now + request.ttl,
            meta=dict(request.meta),
        )
        return Step(decision, lease, None, len(current), expired, expired_waiters)
    waiter = None
    if request.queue_for > 0:
        waiter = Waiter(
            ticket=mine.ticket if mine else (request.ticket or new_ticket),
            function=request.function,
            enqueued_at=mine.enqueued_at if mine else now,
            expires_at=now + request.queue_for,
        )
    return Step(decision, None, waiter, len(current), expired, expired_waiters)
