"""Fair handoff on every backend: a holder learns that someone waits and gives its lease.

The stores that signal contention (Redis by pub/sub, memory in process) must say
so without a store call and count leases already promised, so one waiter takes
one holder's lease; the others use the default offer (a snapshot).
"""

from __future__ import annotations

import threading
import time

from fleetpool import Lease, NoConnectionsLeft
from tests.integration.budget import test_contract as contract
from tests.integration.budget.test_contract import Factory

# The contract's fixtures: every backend, budgets opened by URL.
store_url = contract.store_url
open_ = contract.open_


def _wait_until(check: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_nobody_waits_means_no_contention_and_keep(open_: Factory) -> None:
    b = open_()
    b.configure(limit=2)
    lease = b.acquire(function="api", holder="h1", ttl=30)
    for _ in range(3):
        assert b.contended() is False
    assert b.offer(lease) is False
    assert b.snapshot().in_use == 1
    b.release(lease)


def test_a_waiter_gets_one_holders_lease(open_: Factory) -> None:
    holders = [open_(), open_()]
    holders[0].configure(limit=2)
    leases = [h.acquire(function="api", holder=f"h{i}", ttl=30) for i, h in enumerate(holders)]
    for h in holders:
        h.contended()  # a Redis holder subscribes at its first look
    waiter = open_()
    got: list[Lease] = []
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            got.append(waiter.acquire(function="api", holder="w", ttl=30, wait=8))
        except NoConnectionsLeft as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    try:
        assert _wait_until(lambda: holders[0].snapshot().waiting == 1)
        if holders[0].backend.signals_contention:
            assert _wait_until(holders[0].contended), "the holder never heard of the waiter"
            assert _wait_until(holders[1].contended), "the holder never heard of the waiter"
        first = holders[0].offer(leases[0])
        second = holders[1].offer(leases[1])
        assert first is True
        if holders[0].backend.signals_contention:
            # One promised lease serves the one waiter: the other holder keeps its own.
            assert second is False
        holders[0].release(leases[0])
        t.join(10)
        assert not errors and len(got) == 1
        assert holders[1].snapshot().in_use == 2
    finally:
        t.join(10)
        for lease in got + leases[1:]:
            waiter.release(lease)
