"""The shared acquire step on plain numbers: no clock, no randomness, no store."""

from __future__ import annotations

from fleetpool.budget import BudgetConfig
from fleetpool.budget._base import AcquireRequest, Lease
from fleetpool.budget._policy import BUDGET_FULL, GRANTED, QUEUED_BEHIND
from fleetpool.budget._state import Waiter, acquire_step


def lease(lease_id: str, function: str, expires_at: float) -> Lease:
    return Lease(lease_id, "b", function, "h", 0.0, expires_at, {})


def request(ticket: str | None = None, queue_for: float = 5.0) -> AcquireRequest:
    return AcquireRequest("api", "h:1", 30.0, {"tag": "t"}, "L-new", ticket, queue_for)


def test_a_grant_is_a_lease_from_now_for_ttl() -> None:
    step = acquire_step("b", BudgetConfig(2), [lease("x", "api", 50.0)], [], request(), 10.0, "T")
    assert step.decision.reason == GRANTED
    assert step.lease == Lease("L-new", "b", "api", "h:1", 10.0, 40.0, {"tag": "t"})
    assert step.waiter is None
    assert step.in_use == 1


def test_expired_leases_and_waiters_are_reclaimed_at_now() -> None:
    leases = [lease("old", "api", 10.0), lease("live", "other", 10.5)]
    waiters = [Waiter("w-old", "api", 0.0, 10.0)]
    step = acquire_step("b", BudgetConfig(1), leases, waiters, request(), 10.0, "T")
    assert step.expired == ["old"] and step.expired_waiters == ["w-old"]
    assert step.decision.reason == BUDGET_FULL and step.in_use == 1


def test_a_refused_caller_without_a_ticket_queues_under_the_given_id() -> None:
    full = [lease("x", "other", 50.0)]
    step = acquire_step("b", BudgetConfig(1), full, [], request(), 10.0, "T-fresh")
    assert step.lease is None
    assert step.waiter == Waiter("T-fresh", "api", 10.0, 15.0)
    # Without queueing there is no waiter, whatever id was offered.
    step = acquire_step("b", BudgetConfig(1), full, [], request(queue_for=0.0), 10.0, "T")
    assert step.waiter is None


def test_a_known_ticket_keeps_its_place_and_id() -> None:
    full = [lease("x", "other", 50.0)]
    waiters = [Waiter("first", "api", 1.0, 12.0), Waiter("mine", "api", 2.0, 12.0)]
    step = acquire_step("b", BudgetConfig(2), full, waiters, request("mine"), 10.0, "T")
    # One slot is free, but the earlier waiter is ahead of us.
    assert step.decision.reason == QUEUED_BEHIND
    assert step.waiter == Waiter("mine", "api", 2.0, 15.0)
    # Same inputs, same outcome: the step is a function of its arguments.
    again = acquire_step("b", BudgetConfig(2), full, waiters, request("mine"), 10.0, "T")
    assert again == step
