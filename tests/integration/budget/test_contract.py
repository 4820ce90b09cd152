"""The budget contract: every backend passes the same suite.

Backends: memory, sqlite (a temp file), redis (a real redis-server) and dynamodb
(moto's server mode standing in for AWS's HTTP API). Each test opens budgets by
URL exactly as users do.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import fleetpool
from fleetpool import Budget, LeaseLost, NoConnectionsLeft

BACKENDS = ["memory", "sqlite", "redis", "dynamodb"]
Factory = Callable[..., Budget]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind = request.param
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/budget.db"
    if kind == "redis":
        return str(request.getfixturevalue("redis_url"))
    endpoint = request.getfixturevalue("moto_endpoint")
    return f"dynamodb://fleetpool-test?region=us-east-1&endpoint_url={endpoint}"


@pytest.fixture
def open_(store_url: str) -> Iterator[Factory]:
    """Open handles on one budget (same store, same name), closed at teardown."""
    name = f"contract-{uuid.uuid4().hex[:10]}"
    opened: list[Budget] = []

    def make(**kwargs: object) -> Budget:
        budget = fleetpool.open_budget(store_url, name, **kwargs)  # type: ignore[arg-type]
        opened.append(budget)
        return budget

    yield make
    for budget in opened:
        budget.close()


def test_configure_and_snapshot(open_: Factory) -> None:
    b = open_()
    b.configure(limit=5, functions={"api": (1, 4), "jobs": (0, 2)})
    snap = b.snapshot()
    assert (snap.limit, snap.in_use, snap.remaining, snap.waiting) == (5, 0, 5, 0)
    lease = b.acquire(function="api", holder="h1", ttl=30)
    snap = b.snapshot()
    assert (snap.in_use, snap.remaining) == (1, 4)
    assert snap.functions == {"api": 1}
    assert snap.config.functions["jobs"].max == 2
    # A second handle on the same store sees the same budget.
    assert open_().snapshot().in_use == 1
    b.release(lease)
    assert b.snapshot().in_use == 0


def test_live_leases_never_exceed_limit(open_: Factory) -> None:
    b = open_()
    b.configure(limit=3)
    leases = [b.acquire(function="api", ttl=30) for _ in range(3)]
    with pytest.raises(NoConnectionsLeft) as err:
        b.acquire(function="api", ttl=30, wait=0)
    e = err.value
    assert (e.limit, e.in_use, e.budget) == (3, 3, b.name)
    assert b.name in str(e) and "limit=3" in str(e) and "in_use=3" in str(e)
    assert isinstance(e, fleetpool.CapacityError)
    for lease in leases:
        b.release(lease)


def test_release_is_idempotent_and_frees_capacity(open_: Factory) -> None:
    b = open_()
    b.configure(limit=1)
    lease = b.acquire(function="api", ttl=30)
    assert b.release(lease) is True
    assert b.release(lease) is False
    assert b.release(None) is False
    again = b.acquire(function="api", ttl=30)
    b.release(again)


def test_expired_lease_never_counts(open_: Factory) -> None:
    b = open_()
    b.configure(limit=2)
    b.acquire(function="api", ttl=0.3)
    b.acquire(function="api", ttl=0.3)
    with pytest.raises(NoConnectionsLeft):
        b.acquire(function="api", ttl=30)
    time.sleep(0.45)
    # No sweeper ran: the expired leases simply do not count any more.
    assert b.snapshot().in_use == 0
    assert b.leases() == []
    fresh = [b.acquire(function="api", ttl=30) for _ in range(2)]
    for lease in fresh:
        b.release(lease)


def test_renew_extends_and_expired_renew_raises_lease_lost(open_: Factory) -> None:
    b = open_()
    b.configure(limit=1)
    lease = b.acquire(function="api", ttl=0.6)
    renewed = b.renew(lease, ttl=5)
    assert renewed.expires_at > lease.expires_at
    assert renewed.id == lease.id
    time.sleep(0.7)
    assert b.snapshot().in_use == 1  # the renewal kept it alive
    short = b.renew(renewed, ttl=0.2)
    time.sleep(0.35)
    with pytest.raises(LeaseLost):
        b.renew(short, ttl=5)
    released = b.acquire(function="api", ttl=5)
    b.release(released)
    with pytest.raises(LeaseLost):
        b.renew(released, ttl=5)


def test_leases_carry_metadata(open_: Factory) -> None:
    b = open_()
    b.configure(limit=3)
    lease = b.acquire(
        function="api", holder="container-7", ttl=30, meta={"server_conn_id": 4242, "tag": "fp:x"}
    )
    [seen] = b.leases()
    assert seen.id == lease.id
    assert seen.holder == "container-7"
    assert seen.function == "api"
    assert seen.meta["server_conn_id"] == 4242
    assert seen.meta["tag"] == "fp:x"
    assert seen.expires_at == pytest.approx(lease.expires_at, abs=1.0)
    b.release(lease)


def test_annotate_adds_metadata_to_a_live_lease_only(open_: Factory) -> None:
    b = open_()
    b.configure(limit=2)
    lease = b.acquire(function="api", holder="h", ttl=30, meta={"tag": "fp:x", "engine": "pg"})
    other = b.acquire(function="api", holder="h2", ttl=30, meta={"tag": "fp:y"})
    # Known only after connecting: the server's session id.
    annotated = b.annotate(lease, {"session_id": 4242, "tag": 'fp:"quoted",m:'})
    assert annotated.meta == {"tag": 'fp:"quoted",m:', "engine": "pg", "session_id": 4242}
    assert annotated.expires_at == pytest.approx(lease.expires_at, abs=0.01)
    seen = {x.id: x for x in b.leases()}
    assert seen[lease.id].meta == annotated.meta
    assert seen[lease.id].holder == "h"
    assert seen[lease.id].function == "api"
    assert seen[other.id].meta == {"tag": "fp:y"}  # the other lease is untouched
    assert b.snapshot().in_use == 2
    b.release(lease)
    with pytest.raises(LeaseLost):
        b.annotate(lease, {"session_id": 1})
    short = b.acquire(function="api", ttl=0.2)
    time.sleep(0.35)
    with pytest.raises(LeaseLost):
        b.annotate(short, {"session_id": 2})
    b.release(other)


def test_min_is_reserved_for_quiet_functions(open_: Factory) -> None:
    b = open_()
    b.configure(limit=3, functions={"quiet": (2, 3)})
    hot = b.acquire(function="hot", ttl=30)
    # Two of the three are reserved for "quiet", which holds none yet.
    with pytest.raises(NoConnectionsLeft) as err:
        b.acquire(function="hot", ttl=30)
    assert err.value.reason == "reserved_for_others"
    quiet = [b.acquire(function="quiet", ttl=30) for _ in range(2)]
    for lease in [hot, *quiet]:
        b.release(lease)


def test_function_at_max_waits_even_with_room(open_: Factory) -> None:
    b = open_()
    b.configure(limit=10, functions={"hot": (0, 2)})
    held = [b.acquire(function="hot", ttl=30) for _ in range(2)]
    started = time.monotonic()
    with pytest.raises(NoConnectionsLeft) as err:
        b.acquire(function="hot", ttl=30, wait=0.3)
    assert err.value.reason == "at_function_max"
    assert err.value.waited >= 0.29
    assert time.monotonic() - started < 3
    other = b.acquire(function="cold", ttl=30)
    for lease in [*held, other]:
        b.release(lease)


def test_waiter_is_granted_when_capacity_frees(open_: Factory) -> None:
    b = open_()
    b.configure(limit=1)
    holder = b.acquire(function="api", ttl=30)
    granted_after: list[float] = []

    def release_later() -> None:
        time.sleep(0.3)
        open_().release(holder)

    t = threading.Thread(target=release_later)
    start = time.monotonic()
    t.start()
    lease = b.acquire(function="api", ttl=30, wait=5)
    granted_after.append(time.monotonic() - start)
    t.join()
    assert 0.25 <= granted_after[0] < 4.0
    b.release(lease)


def test_waiter_is_granted_when_a_lease_expires(open_: Factory) -> None:
    b = open_()
    b.configure(limit=1)
    b.acquire(function="api", ttl=0.4)
    start = time.monotonic()
    lease = b.acquire(function="api", ttl=30, wait=5)
    assert time.monotonic() - start < 4.0
    b.release(lease)


def test_waiting_is_counted_and_served_first_come_first_served(open_: Factory) -> None:
    b = open_()
    b.configure(limit=1)
    first_holder = b.acquire(function="api", ttl=30)
    order: list[str] = []
    results: dict[str, fleetpool.Lease] = {}

    def wait_for(tag: str) -> None:
        budget = open_()
        lease = budget.acquire(function="api", ttl=30, wait=10)
        order.append(tag)
        results[tag] = lease
        time.sleep(0.2)
        budget.release(lease)

    early = threading.Thread(target=wait_for, args=("early",))
    early.start()
    deadline = time.monotonic() + 5
    while b.snapshot().waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b.snapshot().waiting == 1
    late = threading.Thread(target=wait_for, args=("late",))
    late.start()
    while b.snapshot().waiting < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b.snapshot().waiting == 2
    b.release(first_holder)
    early.join(10)
    late.join(10)
    assert order == ["early", "late"]
    assert b.snapshot().waiting == 0


def test_threads_never_see_more_holders_than_the_limit(open_: Factory) -> None:
    b = open_()
    limit = 3
    b.configure(limit=limit)
    lock = threading.Lock()
    holders = [0]
    peak = [0]
    errors: list[BaseException] = []
    stop_at = time.monotonic() + 2.0

    def worker() -> None:
        budget = open_()
        try:
            while time.monotonic() < stop_at:
                try:
                    lease = budget.acquire(function="api", ttl=10, wait=0.5)
                except NoConnectionsLeft:
                    continue
                with lock:
                    holders[0] += 1
                    peak[0] = max(peak[0], holders[0])
                time.sleep(0.002)
                with lock:
                    holders[0] -= 1
                budget.release(lease)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not errors
    assert 1 <= peak[0] <= limit
    assert b.snapshot().in_use == 0


def test_reconfigure_changes_the_limit(open_: Factory) -> None:
    b = open_()
    b.configure(limit=1)
    first = b.acquire(function="api", ttl=30)
    b.configure(limit=2)
    second = b.acquire(function="api", ttl=30)
    b.configure(limit=1)
    # Lowering the limit never revokes leases; it only stops new grants.
    with pytest.raises(NoConnectionsLeft):
        b.acquire(function="api", ttl=30)
    assert b.snapshot().in_use == 2
    b.release(first)
    b.release(second)


def test_bad_arguments_get_clear_errors(open_: Factory) -> None:
    b = open_()
    b.configure(limit=1)
    with pytest.raises(fleetpool.ConfigError, match="ttl"):
        b.acquire(function="api", ttl=0)
    with pytest.raises(fleetpool.ConfigError, match="wait"):
        b.acquire(function="api", ttl=1, wait=-1)
    with pytest.raises(fleetpool.ConfigError, match="function"):
        b.acquire(function="", ttl=1)
    with pytest.raises(fleetpool.ConfigError, match="limit"):
        b.configure(limit=-5)


def test_async_budget(store_url: str) -> None:
    name = f"async-{uuid.uuid4().hex[:10]}"

    async def main() -> None:
        b = fleetpool.open_async_budget(store_url, name)
        await b.configure(limit=1)
        lease = await b.acquire(function="proxy", holder="p1", ttl=30)
        assert (await b.snapshot()).in_use == 1

        async def release_soon() -> None:
            await asyncio.sleep(0.2)
            await b.release(lease)

        task = asyncio.create_task(release_soon())
        second = await b.acquire(function="proxy", ttl=30, wait=5)
        await task
        renewed = await b.renew(second, ttl=60)
        assert renewed.expires_at > second.expires_at
        assert [x.id for x in await b.leases()] == [second.id]
        await b.release(second)
        await b.close()

    asyncio.run(main())


def test_an_unconfigured_budget_fails_at_once_naming_itself(open_: Factory) -> None:
    b = open_()
    started = time.monotonic()
    with pytest.raises(fleetpool.BudgetNotConfigured) as err:
        b.acquire(function="api", ttl=30, wait=30)
    assert time.monotonic() - started < 15  # it did not wait out its 30 s
    message = str(err.value)
    assert repr(b.name) in message and "fleetpool budget set" in message
    assert isinstance(err.value, fleetpool.ConfigError)
    assert b.snapshot().waiting == 0  # its place in the queue was given up
    # A limit of 0 set on purpose is a configuration: callers wait, then are refused.
    b.configure(limit=0)
    with pytest.raises(NoConnectionsLeft):
        b.acquire(function="api", ttl=30, wait=0.2)


def test_async_acquire_of_an_unconfigured_budget_fails_too(store_url: str) -> None:
    async def main() -> None:
        async with fleetpool.open_async_budget(store_url, f"un-{uuid.uuid4().hex[:8]}") as b:
            with pytest.raises(fleetpool.BudgetNotConfigured):
                await b.acquire(function="api", ttl=30, wait=30)

    asyncio.run(main())


def test_the_store_lists_its_configured_budgets(open_: Factory, store_url: str) -> None:
    from fleetpool.budget import list_budgets

    configured = open_()
    configured.configure(limit=2)
    never = fleetpool.open_budget(store_url, f"never-{uuid.uuid4().hex[:8]}")
    try:
        never.snapshot()  # read, not configured
        names = list_budgets(store_url)
        assert configured.name in names and never.name not in names
        assert names == sorted(names)
    finally:
        never.close()
