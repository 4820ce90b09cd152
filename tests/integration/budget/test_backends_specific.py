"""Behaviour specific to one budget backend (the shared contract is in test_budget_contract).

* sqlite: processes never exceed the limit (a budget opened before ``fork`` keeps
  working in the children); a waiter in one process is woken promptly by a release
  in another; a file locked past the timeout is ``BudgetUnavailable``.
* redis: all keys of a budget share one hash tag (one Cluster slot); an unreachable
  or frozen server is ``BudgetUnavailable`` within about the timeout, and fail_open
  then grants an unrecorded lease; a connection killed by the server is replaced
  transparently; wake-up subscriptions are closed with the budget.
* dynamodb (moto's server mode): table creation, the item-size guard, and threads
  racing on conditional writes never exceed the limit.

Servers are private to this module (a throwaway redis-server, a moto server), so
the tests can freeze, kill and inspect them.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import fleetpool
from fleetpool import BudgetUnavailable, NoConnectionsLeft
from fleetpool_testing import RedisServer

pytestmark = pytest.mark.integration

# -- servers ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_server() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def frozen_redis() -> Iterator[tuple[str, RedisServer]]:
    """A private redis-server the test may freeze (it is thawed and stopped after)."""
    with RedisServer() as server:
        yield server.url, server
        server.thaw()


@pytest.fixture(scope="module")
def moto_url(moto_endpoint: str) -> str:
    return moto_endpoint


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- sqlite -----------------------------------------------------------------------------


def _sqlite_worker(
    budget: fleetpool.Budget,
    holders: Any,
    peak: Any,
    grants: Any,
    seconds: float,
    seed: int,
) -> None:
    import random

    rng = random.Random(seed)
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        try:
            lease = budget.acquire(function=rng.choice(["api", "jobs"]), ttl=10, wait=0.5)
        except NoConnectionsLeft:
            continue
        with holders.get_lock():
            holders.value += 1
            peak.value = max(peak.value, holders.value)
            grants.value += 1
        time.sleep(rng.uniform(0, 0.003))
        with holders.get_lock():
            holders.value -= 1
        budget.release(lease)


def test_sqlite_four_processes_never_exceed_the_limit(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    url = f"sqlite:///{tmp_path}/procs.db"
    # Opened and used before the fork: the children must re-open their connections.
    budget = fleetpool.open_budget(url, _name("procs"), on_unavailable="fail_closed")
    limit = 3
    budget.configure(limit=limit, functions={"api": (1, 3), "jobs": (0, 2)})
    budget.release(budget.acquire(function="api", ttl=5))
    holders, peak, grants = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("i", 0)
    procs = [
        ctx.Process(target=_sqlite_worker, args=(budget, holders, peak, grants, 2.5, i))
        for i in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert grants.value > 200, grants.value
    assert 1 <= peak.value <= limit
    assert budget.snapshot().in_use == 0
    budget.close()


def _hold_then_release(url: str, name: str, ready: Any, released_at: Any, hold: float) -> None:
    budget = fleetpool.open_budget(url, name, on_unavailable="fail_closed")
    lease = budget.acquire(function="api", ttl=30)
    ready.set()
    time.sleep(hold)
    released_at.value = time.time()
    budget.release(lease)
    budget.close()


def test_sqlite_waiter_is_woken_promptly_by_a_release_in_another_process(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    url = f"sqlite:///{tmp_path}/wake.db"
    name = _name("wake")
    budget = fleetpool.open_budget(url, name, on_unavailable="fail_closed")
    budget.configure(limit=1)
    latencies = []
    for _ in range(3):
        ready, released_at = ctx.Event(), ctx.Value("d", 0.0)
        p = ctx.Process(target=_hold_then_release, args=(url, name, ready, released_at, 0.6))
        p.start()
        assert ready.wait(20)
        lease = budget.acquire(function="api", ttl=30, wait=10)
        granted_at = time.time()
        p.join(20)
        latencies.append(granted_at - released_at.value)
        budget.release(lease)
    # Without a notification the next poll would come 0.25-0.75 s later.
    assert max(latencies) < 0.15, latencies
    budget.close()


def test_sqlite_locked_beyond_the_timeout_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}?timeout=0.3"
    name = _name("locked")
    budget = fleetpool.open_budget(url, name, on_unavailable="fail_closed")
    budget.configure(limit=2)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        start = time.monotonic()
        with pytest.raises(BudgetUnavailable, match="locked"):
            budget.acquire(function="api", ttl=5)
        assert 0.25 <= time.monotonic() - start < 1.5
        lenient = fleetpool.open_budget(url, name, on_unavailable="fail_open")
        lease = lenient.acquire(function="api", ttl=5)
        assert lease.recorded is False
        lenient.close()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    lease = budget.acquire(function="api", ttl=5)
    assert lease.recorded
    budget.release(lease)
    budget.close()


def test_sqlite_creates_parent_directories_and_does_no_io_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "budget.db"
    budget = fleetpool.open_budget(f"sqlite:///{path}", _name("dirs"))
    assert not path.exists()
    budget.configure(limit=1)
    assert path.exists()
    budget.close()


_CLOSE_RACE = """
import sys, threading, time
import fleetpool
budget = fleetpool.open_budget(sys.argv[1], "close-race", on_unavailable="fail_closed")
budget.configure(limit=50)
stop = time.monotonic() + 3.0
errors = []

def worker():
    while time.monotonic() < stop:
        try:
            budget.release(budget.acquire(function="api", ttl=30))
        except fleetpool.BudgetUnavailable as exc:
            errors.append(exc)

threads = [threading.Thread(target=worker) for _ in range(4)]
for t in threads:
    t.start()
closes = 0
while time.monotonic() < stop:
    budget.close()  # other threads are mid-call on their own connections
    closes += 1
    time.sleep(0.002)
for t in threads:
    t.join(10)
print(closes, len(errors), budget.snapshot().in_use)
"""


def test_sqlite_close_while_other_threads_are_mid_call_is_safe(tmp_path: Path) -> None:
    """close() waits for calls in flight: closing a connection under one crashed the process."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/race.db"
    done = subprocess.run(
        [sys.executable, "-c", _CLOSE_RACE, url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    closes, errors, in_use = map(int, done.stdout.split())
    assert closes >= 3  # several closes raced the workers (the old code crashed at once)
    assert errors == 0
    assert in_use == 0


# -- redis ------------------------------------------------------------------------------


def test_redis_keys_share_one_hash_tag(redis_server: str) -> None:
    import redis as redis_py
    from redis.crc import key_slot

    name = _name("tag")
    budget = fleetpool.open_budget(redis_server, name)
    budget.configure(limit=1, functions={"api": (0, 1)})
    held = budget.acquire(function="api", ttl=30)
    with pytest.raises(NoConnectionsLeft):
        budget.acquire(function="api", ttl=30, wait=0.2)  # creates waiter keys
    client = redis_py.Redis.from_url(redis_server)
    client.zadd("{fleetpool:" + name + "}:wq", {"probe": 1})  # keep the waiter keys around
    keys = [k.decode() for k in client.scan_iter(match=f"*{name}*")]
    assert len(keys) >= 5, keys
    assert all(k.startswith("{fleetpool:" + name + "}:") for k in keys), keys
    assert len({key_slot(k.encode()) for k in keys}) == 1
    budget.release(held)
    budget.close()
    client.close()


def _exercise(url: str, name: str) -> bool:
    """Every operation once, with a waiter woken by a release; True if FCALL did them."""
    budget = fleetpool.open_budget(url, name, on_unavailable="fail_closed")
    budget.configure(limit=1, functions={"api": (0, 1)})
    held = budget.acquire(function="api", ttl=30)
    assert budget.snapshot().in_use == 1
    assert [lease.id for lease in budget.leases()] == [held.id]
    held = budget.renew(held, ttl=60)
    threading.Timer(0.2, budget.release, args=(held,)).start()
    second = budget.acquire(function="api", ttl=30, wait=5)
    assert budget.release(second) is True
    assert budget.snapshot().in_use == 0
    used_functions = bool(budget.backend.functions)
    budget.close()
    return used_functions


def test_redis_runs_operations_as_functions_and_reloads_them_after_a_flush(
    redis_server: str,
) -> None:
    import redis as redis_py

    name = _name("functions")
    assert _exercise(redis_server, name)
    admin = redis_py.Redis.from_url(redis_server)
    listing = repr(admin.function_list())  # RESP2: flat [name, value, ...] lists
    assert "fleetpool_" in listing, listing
    admin.function_flush()  # what a restart without persistence does to them
    assert _exercise(redis_server, name)
    admin.close()


@pytest.mark.parametrize(
    "denied",
    [
        pytest.param(
            ["--rename-command", "FCALL", "", "--rename-command", "FUNCTION", ""], id="no-functions"
        ),
        pytest.param([], id="acl-without-function-commands"),
    ],
)
def test_redis_without_functions_falls_back_to_scripts(denied: list[str]) -> None:
    """Redis 6 has no FCALL; an ACL may refuse FUNCTION or FCALL: EVALSHA does the same work."""
    import redis as redis_py

    with RedisServer(extra_args=denied) as server:
        url = server.url
        if not denied:
            admin = redis_py.Redis.from_url(server.url)
            admin.acl_setuser(
                "app",
                enabled=True,
                passwords=["+secret"],
                keys=["*"],
                channels=["*"],
                commands=["+@all", "-function", "-fcall"],
            )
            admin.close()
            url = f"redis://app:secret@127.0.0.1:{server.port}/0"
        name = _name("scripts")
        assert not _exercise(url, name)
        assert not _exercise(url, name)


def test_redis_closed_port_is_unavailable_fast_and_fail_open_grants(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{_free_port()}/0?timeout=0.5"
    start = time.monotonic()
    strict = fleetpool.open_budget(url, _name("closed"), on_unavailable="fail_closed")
    assert time.monotonic() - start < 0.1  # opening does no network I/O
    with pytest.raises(BudgetUnavailable):
        strict.acquire(function="api", ttl=5)
    assert time.monotonic() - start < 1.0
    lenient = fleetpool.open_budget(url, _name("closed"), on_unavailable="fail_open")
    lease = lenient.acquire(function="api", ttl=5)
    assert lease.recorded is False
    assert lenient.release(lease) is False
    strict.close()
    lenient.close()


def test_redis_frozen_server_is_unavailable_within_the_timeout(
    frozen_redis: tuple[str, RedisServer],
) -> None:
    url, server = frozen_redis
    budget = fleetpool.open_budget(
        url + "?timeout=0.5", _name("frozen"), on_unavailable="fail_closed"
    )
    budget.configure(limit=2)
    lease = budget.acquire(function="api", ttl=30)
    server.freeze()
    try:
        for call in (
            lambda: budget.acquire(function="api", ttl=5),
            lambda: budget.renew(lease, 5),
            budget.snapshot,
        ):
            start = time.monotonic()
            with pytest.raises(BudgetUnavailable):
                call()
            assert time.monotonic() - start < 1.2
        # fail_open: an unrecorded lease, after about one timeout.
        lenient = fleetpool.open_budget(url + "?timeout=0.5", budget.name)
        start = time.monotonic()
        local = lenient.acquire(function="api", ttl=5)
        assert local.recorded is False
        assert time.monotonic() - start < 1.2
        # A release that cannot reach the store is swallowed: the lease will expire.
        assert lenient.release(lease) is False
        lenient.close()
    finally:
        server.thaw()
    # Back to normal once the server answers again. The acquire that timed out
    # ran late on the thawed server; the next call that works gives it back.
    deadline = time.monotonic() + 5
    while True:
        try:
            if budget.snapshot().in_use == 1:
                break
        except BudgetUnavailable:
            pass
        assert time.monotonic() < deadline, "the late lease was not given back"
        time.sleep(0.05)
    budget.release(lease)
    budget.close()


def test_redis_connection_killed_by_the_server_is_replaced(redis_server: str) -> None:
    import redis as redis_py

    name = _name("killed")
    budget = fleetpool.open_budget(redis_server, name, on_unavailable="fail_closed")
    budget.configure(limit=2)
    admin = redis_py.Redis.from_url(redis_server)
    for _ in range(3):
        # What a NAT or the server does to an idle Lambda's connection while it is frozen.
        admin.client_kill_filter(_type="normal", skipme=True)
        lease = budget.acquire(function="api", ttl=5)
        assert lease.recorded
        budget.release(lease)
    admin.close()
    budget.close()


def test_redis_wake_up_subscriptions_are_closed_with_the_budget(redis_server: str) -> None:
    import redis as redis_py

    admin = redis_py.Redis.from_url(redis_server)

    def pubsub_clients() -> int:
        return sum(1 for c in admin.client_list() if int(c.get("sub", 0)) > 0)

    before = pubsub_clients()
    name = _name("subs")
    budget = fleetpool.open_budget(redis_server, name)
    budget.configure(limit=1)
    held = budget.acquire(function="api", ttl=30)

    def waiter() -> None:
        with pytest.raises(NoConnectionsLeft):
            budget.acquire(function="api", ttl=30, wait=0.3)

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert pubsub_clients() == before + 3  # one per waiting thread, kept for its next wait
    budget.release(held)
    budget.close()
    deadline = time.monotonic() + 3
    while pubsub_clients() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pubsub_clients() == before
    admin.close()


def test_redis_waiter_is_woken_promptly(redis_server: str) -> None:
    name = _name("rwake")
    budget = fleetpool.open_budget(redis_server, name, on_unavailable="fail_closed")
    budget.configure(limit=1)
    other = fleetpool.open_budget(redis_server, name, on_unavailable="fail_closed")
    latencies = []
    for _ in range(3):
        held = other.acquire(function="api", ttl=30)
        released_at = [0.0]

        def release_later(lease: fleetpool.Lease = held, box: list[float] = released_at) -> None:
            time.sleep(0.4)
            box[0] = time.time()
            other.release(lease)

        t = threading.Thread(target=release_later)
        t.start()
        lease = budget.acquire(function="api", ttl=30, wait=5)
        latencies.append(time.time() - released_at[0])
        t.join()
        budget.release(lease)
    assert max(latencies) < 0.15, latencies
    other.close()
    budget.close()


def test_redis_unknown_url_option_is_a_config_error(redis_server: str) -> None:
    with pytest.raises(fleetpool.ConfigError, match="frobnicate"):
        fleetpool.open_budget(redis_server + "?frobnicate=1", "x")


# -- dynamodb ---------------------------------------------------------------------------


def _dynamo_url(endpoint: str, table: str, create: bool = True) -> str:
    return f"dynamodb://{table}?region=us-east-1&endpoint_url={endpoint}" + (
        "" if create else "&create=false"
    )


def test_dynamodb_creates_its_table_and_keeps_budgets_apart(moto_url: str) -> None:
    table = f"fp-{uuid.uuid4().hex[:8]}"
    a = fleetpool.open_budget(
        _dynamo_url(moto_url, table), _name("a"), on_unavailable="fail_closed"
    )
    b = fleetpool.open_budget(
        _dynamo_url(moto_url, table), _name("b"), on_unavailable="fail_closed"
    )
    a.configure(limit=1)
    b.configure(limit=2)
    la = a.acquire(function="api", ttl=30, meta={"server_conn_id": 7})
    lb = [b.acquire(function="api", ttl=30) for _ in range(2)]
    with pytest.raises(NoConnectionsLeft):
        a.acquire(function="api", ttl=30)
    assert (a.snapshot().in_use, b.snapshot().in_use) == (1, 2)
    assert a.leases()[0].meta == {"server_conn_id": 7}
    for lease in [la, *lb]:
        (a if lease is la else b).release(lease)
    a.close()
    b.close()


def test_dynamodb_missing_table_without_create_is_not_configured(moto_url: str) -> None:
    # A table name that does not exist is a configuration to fix, not an outage to ride
    # out: even fail_open does not grant on it.
    url = _dynamo_url(moto_url, f"absent-{uuid.uuid4().hex[:8]}", create=False)
    for mode in ("fail_closed", "fail_open"):
        budget = fleetpool.open_budget(url, "x", on_unavailable=mode)  # type: ignore[arg-type]
        with pytest.raises(fleetpool.NotConfigured, match="absent-"):
            budget.snapshot()
        with pytest.raises(fleetpool.NotConfigured, match="absent-"):
            budget.acquire(function="api", ttl=30)
        budget.close()


def test_dynamodb_item_size_limit_is_a_clear_error(moto_url: str) -> None:
    budget = fleetpool.open_budget(_dynamo_url(moto_url, "fp-size"), _name("size"))
    budget.configure(limit=100)
    with pytest.raises(fleetpool.ConfigError, match="400 KB"):
        for _ in range(100):
            budget.acquire(function="api", ttl=30, meta={"blob": "x" * 50_000})
    budget.close()


def test_dynamodb_unreachable_endpoint_is_unavailable(tmp_path: Path) -> None:
    pytest.importorskip("boto3")
    url = _dynamo_url(f"http://127.0.0.1:{_free_port()}", "t") + "&timeout=0.5"
    budget = fleetpool.open_budget(url, "x", on_unavailable="fail_closed")
    start = time.monotonic()
    with pytest.raises(BudgetUnavailable):
        budget.acquire(function="api", ttl=5)
    assert time.monotonic() - start < 3
    budget.close()


def test_dynamodb_threads_never_exceed_the_limit(moto_url: str) -> None:
    url = _dynamo_url(moto_url, "fp-race")
    name = _name("race")
    setup = fleetpool.open_budget(url, name)
    limit = 3
    setup.configure(limit=limit)
    lock = threading.Lock()
    holders, peak, grants = [0], [0], [0]
    errors: list[BaseException] = []
    # Bounded by count and time: enough contended grants to mean something, and a
    # loaded machine (moto is slow under load) gets more time instead of failing.
    stop_at = time.monotonic() + 10.0

    def worker(make: Callable[[], fleetpool.Budget]) -> None:
        budget = make()
        try:
            while time.monotonic() < stop_at and grants[0] < 60:
                try:
                    lease = budget.acquire(function="api", ttl=10, wait=0.5)
                except NoConnectionsLeft:
                    continue
                with lock:
                    holders[0] += 1
                    peak[0] = max(peak[0], holders[0])
                    grants[0] += 1
                time.sleep(0.005)
                with lock:
                    holders[0] -= 1
                budget.release(lease)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            budget.close()

    def make() -> fleetpool.Budget:
        return fleetpool.open_budget(url, name, on_unavailable="fail_closed")

    threads = [threading.Thread(target=worker, args=(make,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:3]
    assert grants[0] > 20
    assert 1 <= peak[0] <= limit
    assert setup.snapshot().in_use == 0
    setup.close()
