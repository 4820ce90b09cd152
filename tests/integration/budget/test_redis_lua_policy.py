"""The Redis backend's Lua admission decides exactly like the pure Python rule.

Hypothesis draws a configuration, live and expired leases per function, and a
queue of waiters (some expired) with the caller somewhere in it or not queued.
The state is written straight into a real redis-server in the backend's key
layout, one acquire runs as the Lua script, and its decision must equal
:func:`fleetpool.budget._policy.admit` and
:func:`fleetpool.budget._state.acquire_step` over the same state. Afterwards
the script's bookkeeping must still agree with itself (per-function counts,
expiry index, waiter indexes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetpool.budget import AcquireRequest, BudgetConfig, Lease, admit
from fleetpool.budget._state import Waiter, acquire_step
from fleetpool_testing import RedisServer
from tests.cases.budget import NAMES, configs

redis_py = pytest.importorskip("redis")
from fleetpool.budget.redis import RedisBackend, budget_keys  # noqa: E402

FAR = 4_000_000_000.0  # an expiry far in the future (server time is ~1.8e9 s)
PAST = 1_000_000.0  # an expiry long gone


@pytest.fixture(scope="module")
def lua_redis_url() -> Iterator[str]:
    """A private, throwaway redis-server (the test rewrites its keys freely)."""
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="module")
def backend(lua_redis_url: str) -> Iterator[RedisBackend]:
    b = RedisBackend("lua-policy", lua_redis_url, timeout=2.0)
    yield b
    b.close()


@dataclass(frozen=True)
class Case:
    config: BudgetConfig
    live: dict[str, int]
    expired: dict[str, int]
    #: The queue in order: (function, expired?) per waiter.
    queue: list[tuple[str, bool]]
    function: str
    #: The caller's index in ``queue`` (its ticket), or None when not queued.
    position: int | None
    queue_for: float


@st.composite
def cases(draw: st.DrawFn) -> Case:
    config = draw(configs())
    live = draw(st.dictionaries(st.sampled_from(NAMES), st.integers(0, 8), max_size=4))
    expired = draw(st.dictionaries(st.sampled_from(NAMES), st.integers(0, 3), max_size=4))
    queue = draw(st.lists(st.tuples(st.sampled_from(NAMES), st.booleans()), max_size=8))
    function = draw(st.sampled_from(NAMES))
    position = None
    if queue and draw(st.booleans()):
        position = draw(st.integers(0, len(queue) - 1))
        queue[position] = (function, queue[position][1])
    queue_for = draw(st.sampled_from([0.0, 5.0]))
    return Case(config, live, expired, queue, function, position, queue_for)


def load(client: redis_py.Redis, keys: list[str], case: Case) -> None:
    """Write ``case`` into Redis in the backend's layout (as its scripts would have)."""
    k_config, k_leases, k_expiry, k_counts, k_wq, k_wexp, k_wfn, k_seq = keys[:8]
    pipe = client.pipeline()
    pipe.delete(*keys)
    pipe.set(k_config, case.config.to_json())
    for kind, table, expiry in (("live", case.live, FAR), ("dead", case.expired, PAST)):
        for fn, n in table.items():
            for i in range(n):
                lease_id = f"{kind}-{fn}-{i}"
                value = json.dumps({"a": 1.0, "f": fn, "h": "h", "m": {}})
                pipe.hset(k_leases, lease_id, value)
                pipe.zadd(k_expiry, {lease_id: int(expiry * 1_000_000)})  # scores are µs
                pipe.hincrby(k_counts, fn, 1)
    for i, (fn, dead) in enumerate(case.queue):
        ticket = f"t{i}"
        pipe.zadd(k_wq, {ticket: i + 1})
        pipe.zadd(k_wexp, {ticket: int((PAST if dead else FAR) * 1_000_000)})
        pipe.hset(k_wfn, ticket, fn)
    pipe.set(k_seq, len(case.queue))
    pipe.execute()


def python_state(case: Case) -> tuple[list[Lease], list[Waiter]]:
    leases = []
    for kind, table, expiry in (("live", case.live, FAR), ("dead", case.expired, PAST)):
        for fn, n in table.items():
            for i in range(n):
                leases.append(Lease(f"{kind}-{fn}-{i}", "b", fn, "h", 1.0, expiry))
    waiters = [
        Waiter(f"t{i}", fn, float(i + 1), PAST if dead else FAR)
        for i, (fn, dead) in enumerate(case.queue)
    ]
    return leases, waiters


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cases())
def test_lua_decision_equals_admit(backend: RedisBackend, case: Case) -> None:
    client = backend._client
    keys = budget_keys(backend.name)
    load(client, keys, case)
    ticket = f"t{case.position}" if case.position is not None else None
    request = AcquireRequest(
        function=case.function,
        holder="caller",
        ttl=30.0,
        meta={"k": 1},
        lease_id="the-new-lease",
        ticket=ticket,
        queue_for=case.queue_for,
    )
    got = backend.try_acquire(request)

    # The pure rule, on the same state.
    caller_live = case.position is not None and not case.queue[case.position][1]
    live_queue = [(i, fn) for i, (fn, dead) in enumerate(case.queue) if not dead]
    if caller_live:
        assert case.position is not None
        ahead = [fn for i, fn in live_queue if i < case.position]
    else:
        ahead = [fn for _, fn in live_queue]
    live = {fn: n for fn, n in case.live.items() if n}
    expected = admit(case.config, live, case.function, ahead)
    assert (got.lease is not None, got.reason) == (expected.granted, expected.reason)

    # And the whole step (waiter bookkeeping included).
    leases, waiters = python_state(case)
    step = acquire_step(
        backend.name, case.config, leases, waiters, request, time.time(), request.lease_id
    )
    assert step.decision == expected
    assert got.in_use == step.in_use == sum(live.values())
    assert got.reclaimed == len(step.expired) == sum(case.expired.values())
    assert got.limit == case.config.limit
    if step.waiter is None:
        assert got.ticket is None
    elif caller_live or ticket is not None:
        assert got.ticket == step.waiter.ticket
    else:
        assert got.ticket is not None  # a fresh ticket, as the Python step makes one

    # The script left its indexes consistent.
    _, k_leases, k_expiry, k_counts, k_wq, k_wexp, k_wfn, _ = keys[:8]
    stored = {k.decode(): json.loads(v) for k, v in client.hgetall(k_leases).items()}
    assert set(stored) == {k.decode() for k in client.zrange(k_expiry, 0, -1)}
    counts: dict[str, int] = {}
    for value in stored.values():
        counts[value["f"]] = counts.get(value["f"], 0) + 1
    assert {k.decode(): int(v) for k, v in client.hgetall(k_counts).items()} == counts
    expected_counts = dict(live)
    if got.lease is not None:
        expected_counts[case.function] = expected_counts.get(case.function, 0) + 1
        assert stored["the-new-lease"]["m"] == {"k": 1}
        assert stored["the-new-lease"]["h"] == "caller"
    assert counts == expected_counts
    queued = {t.decode() for t in client.zrange(k_wq, 0, -1)}
    assert queued == {t.decode() for t in client.zrange(k_wexp, 0, -1)}
    assert queued == {t.decode() for t in client.hkeys(k_wfn)}
    remaining = {f"t{i}" for i, (_, dead) in enumerate(case.queue) if not dead}
    if ticket is not None and step.waiter is None:
        remaining.discard(ticket)
    if step.waiter is not None:
        remaining.add(got.ticket or "")
    assert queued == remaining


def test_ticket_keeps_its_place_and_fresh_tickets_go_last(backend: RedisBackend) -> None:
    client = backend._client
    keys = budget_keys(backend.name)
    case = Case(BudgetConfig(1), {"api": 1}, {}, [("api", False), ("jobs", False)], "api", 1, 5.0)
    load(client, keys, case)
    req = AcquireRequest("api", "h", 30.0, {}, "x", ticket="t1", queue_for=5.0)
    assert backend.try_acquire(req).ticket == "t1"
    fresh = backend.try_acquire(
        AcquireRequest("api", "h", 30.0, {}, "y", ticket=None, queue_for=5.0)
    )
    order = [t.decode() for t in client.zrange(keys[4], 0, -1)]
    assert order == ["t0", "t1", fresh.ticket]
