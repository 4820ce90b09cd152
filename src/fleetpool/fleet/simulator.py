"""The fleet on a virtual clock: a discrete-event model of ``fleetpool demo`` at any scale.

Strategy: the emulator's containers are processes and its clock is the wall's, so
it stops at a few hundred containers. Here a container is a small object, an
invocation a generator that yields how long it waits, and time jumps from event
to event (a heap), so 100,000 containers and ten simulated minutes take seconds.

What is modelled is what the real run measures: the platform (cold start, one
invocation at a time, the most recently frozen container reused, throttling at
the concurrency limit, reclaim after the idle lifetime, kill at the timeout --
and a killed container's sessions linger, as the emulator's custodian makes
them), the database (``max_connections``, a login's cost, the statement's time,
sessions closed by the server's idle timeout or killed by a client), and every
strategy of the :data:`~fleetpool.fleet.strategies.REGISTRY`.

What is *not* re-written is any decision the library makes: the budget admits
with :func:`fleetpool.budget._policy.admit`, the client plans its checkout and
check-in with :func:`~fleetpool.client.decisions.plan_checkout` /
:func:`~fleetpool.client.decisions.plan_checkin`, retries a refused connect with
:func:`~fleetpool.client.decisions.plan_connect_attempt` and its default backoff,
sets the server's idle timeout with
:func:`~fleetpool.client.decisions.server_idle_timeout`, reaps with
:func:`~fleetpool.client.reaper.should_reap` and
:func:`~fleetpool.client.reaper.choose_victims`; the proxy's pool returns
connections with :func:`fleetpool.proxy.policy.plan_release` and keeps its idle
list with :func:`fleetpool.proxy.policy.plan_idle`. All of them take ``now``: here
it is the virtual clock. The result has the emulator's shape (records, observer
samples) and goes through the same :func:`~fleetpool.fleet.results.summarize`
and :func:`~fleetpool.fleet.results.series`, so the report reads the same.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, fields
from typing import Any

from ..backoff import EqualJitterBackoff, spread_jitter
from ..budget._budget import POLL_MAX
from ..budget._policy import BudgetConfig, admit
from ..client.decisions import (
    SessionReport,
    plan_checkin,
    plan_checkout,
    plan_connect_attempt,
    server_idle_timeout,
)
from ..client.reaper import choose_victims, reap_check_due, should_reap
from ..engines import ErrorKind, SessionRow
from ..errors import ConfigError
from ..proxy import policy as proxy_policy
from ..proxy.config import ProxyConfig
from .emulator import InvocationRecord
from .results import series, summarize
from .run import host_info, scenario_dict
from .scenario import Scenario
from .scheduler import State, is_zombie
from .strategies import DESCRIPTIONS, REGISTRY
from .traffic import Arrival, iter_schedule

#: A process yields a delay (seconds) or a :class:`Wait`; ``yield from`` composes steps.
Step = Generator[Any, Any, Any]

# The client's defaults the fleetpool strategy runs with (fleetpool_client.py
# passes none of these): one copy, read from where they are defined.
REAP_THRESHOLD = 0.8
REAP_INTERVAL = 60.0
CONNECT_TIMEOUT = 5.0
_PROXY_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(ProxyConfig)}
#: zombie-killer: serverless-pg's retry count and utilisation threshold.
ZK_RETRIES = 3
ZK_UTILISATION = 0.8


class Fail(Exception):
    """An invocation (or a container's global section) failed with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- the kernel --------------------------------------------------------------------


class Proc:
    """A running generator; ``token`` makes a stale wake-up (timeout, kill) harmless."""

    __slots__ = ("alive", "gen", "k", "token")

    def __init__(self, k: Kernel, gen: Step) -> None:
        self.k = k
        self.gen = gen
        self.alive = True
        self.token = 0

    def resume(self, value: Any = None) -> None:
        if not self.alive:
            return
        try:
            y = self.gen.send(value)
        except StopIteration:
            self.alive = False
            return
        self.token += 1
        if y.__class__ is float:
            self.k.after(y, self._wake, self.token)
        else:
            y.park(self)

    def _wake(self, token: int) -> None:
        if token == self.token:
            self.resume(None)

    def wake_with(self, token: int, value: Any) -> None:
        if token == self.token:
            self.resume(value)

    def kill(self) -> None:
        """Stop where it stands: no ``except`` or ``finally`` of the model runs (SIGKILL)."""
        self.alive = False
        self.gen = _dead()


def _dead() -> Step:
    yield 0.0


class Wait:
    """Park until :meth:`fire` or, after ``timeout`` seconds, resume with ``None``."""

    __slots__ = ("proc", "timeout", "token")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.proc: Proc | None = None
        self.token = 0

    def park(self, proc: Proc) -> None:
        self.proc = proc
        self.token = proc.token
        if self.timeout < float("inf"):
            proc.k.after(self.timeout, proc.wake_with, self.token, None)

    @property
    def waiting(self) -> bool:
        p = self.proc
        return p is not None and p.alive and p.token == self.token

    def fire(self, value: Any) -> None:
        """Resume the parked process with ``value`` (at the current time, as an event)."""
        assert self.proc is not None
        self.proc.k.at(self.proc.k.now, self.proc.wake_with, self.token, value)


class DelayLine:
    """Events that all come ``delay`` after they are made: first in, first out, so
    one heap entry (for the head) stands for all of them -- a timeout per invocation
    would otherwise keep a hundred thousand entries in the heap."""

    __slots__ = ("armed", "delay", "k", "q")

    def __init__(self, k: Kernel, delay: float) -> None:
        self.k = k
        self.delay = delay
        self.q: deque[tuple[float, Callable[..., None], tuple[Any, ...]]] = deque()
        self.armed = False

    def add(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        t = self.k.now + self.delay
        self.q.append((t, fn, args))
        if not self.armed:
            self.armed = True
            self.k.at(t, self._fire)

    def _fire(self) -> None:
        q = self.q
        now = self.k.now
        while q and q[0][0] <= now:
            _, fn, args = q.popleft()
            fn(*args)
        if q:
            self.k.at(q[0][0], self._fire)
        else:
            self.armed = False


class Kernel:
    """The virtual clock and its event heap (ties run in scheduling order)."""

    __slots__ = ("_lines", "_q", "_seq", "now")

    def __init__(self) -> None:
        self.now = 0.0
        self._q: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._lines: dict[float, DelayLine] = {}

    def line(self, delay: float) -> None:
        """Make ``delay`` (a constant of the model: a cost, a timeout) a :class:`DelayLine`."""
        if delay > 0 and delay not in self._lines:
            self._lines[delay] = DelayLine(self, delay)

    def after(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        line = self._lines.get(delay)
        if line is not None:
            line.add(fn, args)
        else:
            self.at(self.now + delay, fn, *args)

    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._q, (t, self._seq, fn, args))

    def spawn(self, gen: Step) -> Proc:
        p = Proc(self, gen)
        p.resume(None)
        return p

    def run(self, until: Callable[[], float]) -> None:
        q = self._q
        pop = heapq.heappop
        while q and q[0][0] <= until():
            t, _, fn, args = pop(q)
            self.now = t
            fn(*args)


# -- the database --------------------------------------------------------------------


class Session:
    __slots__ = ("active", "closed", "id", "idle_timeout", "owner", "since", "tag")

    def __init__(self, sid: int, owner: Any, tag: str, idle_timeout: float, now: float) -> None:
        self.id = sid
        self.owner = owner  # a Box, or a label (the proxy's pool)
        self.tag = tag
        self.idle_timeout = idle_timeout
        self.active = False
        self.since = now
        self.closed = False


class Server:
    """``max_connections`` and the sessions: opened, idle, ended by timeout or a kill."""

    def __init__(self, k: Kernel, limit: int) -> None:
        self.k = k
        self.limit = limit
        self.sessions: dict[int, Session] = {}
        self._n = 0

    def open(self, owner: Any, tag: str, idle_timeout: float = 0.0) -> Session | None:
        if len(self.sessions) >= self.limit:
            return None
        self._n += 1
        s = Session(self._n, owner, tag, idle_timeout, self.k.now)
        self.sessions[s.id] = s
        self._arm(s)
        return s

    def close(self, s: Session) -> None:
        if not s.closed:
            s.closed = True
            del self.sessions[s.id]

    def busy(self, s: Session) -> None:
        s.active = True
        s.since = self.k.now

    def idle(self, s: Session) -> None:
        s.active = False
        s.since = self.k.now
        self._arm(s)

    def _arm(self, s: Session) -> None:
        if s.idle_timeout > 0:
            self.k.after(s.idle_timeout, self._idle_check, s, s.since)

    def _idle_check(self, s: Session, since: float) -> None:
        if not s.closed and not s.active and s.since == since:
            self.close(s)  # the server ends it; its client finds out at its next use


# -- the budget -----------------------------------------------------------------------


class Waiter:
    __slots__ = ("counted", "function", "wait")

    def __init__(self, function: str, wait: Wait) -> None:
        self.function = function
        self.wait = wait
        #: In the store's count of waiters: until granted or its ``queue_for`` ran out
        #: (a killed container's ticket stays queued until then, as in the stores).
        self.counted = True


class SimBudget:
    """A budget store on the virtual clock; every admission is :func:`admit`'s.

    Leases expire by time alone (an expired lease never counts: ``_expire`` runs
    before every decision). Waiters queue first come, first served and are woken
    on a release, as the stores' notifications wake them, or at their next poll
    (the client's jittered safety-net pause) when a lease expires.
    """

    def __init__(self, sim: Sim, config: BudgetConfig, *, check: bool = False) -> None:
        self.sim = sim
        self.k = sim.k
        self.config = config
        self.in_use: dict[str, int] = {}
        self.expires: dict[int, float] = {}
        self.function_of: dict[int, str] = {}
        self._heap: list[tuple[float, int]] = []
        self.waiters: deque[Waiter] = deque()
        self.n_waiting = 0
        self._armed_at: float | None = None
        self._n = 0
        self.check = check
        self.peak_live = 0
        self.reaper_until = 0.0

    # store operations (each costs a round trip, charged by the caller)
    def _expire(self) -> None:
        now = self.k.now
        heap = self._heap
        while heap and heap[0][0] <= now:
            exp, lid = heapq.heappop(heap)
            if self.expires.get(lid) == exp:
                self._drop(lid)

    def _drop(self, lid: int) -> None:
        del self.expires[lid]
        fn = self.function_of.pop(lid)
        self.in_use[fn] -= 1

    def _grant(self, fn: str, ttl: float) -> tuple[int, float]:
        self._n += 1
        lid = self._n
        exp = self.k.now + ttl
        self.expires[lid] = exp
        self.function_of[lid] = fn
        self.in_use[fn] = self.in_use.get(fn, 0) + 1
        heapq.heappush(self._heap, (exp, lid))
        live = len(self.expires)
        self.peak_live = max(self.peak_live, live)
        if self.check and live > self.config.limit:
            raise AssertionError(f"{live} live leases above the limit {self.config.limit}")
        return lid, exp

    def try_acquire(self, fn: str, ttl: float) -> tuple[int, float] | None:
        self._expire()
        # Lazy: admit reads the queue only when the budget has room (rarely, since a
        # release wakes the queue at once), so a crowd of waiters costs nothing here.
        ahead = (w.function for w in self.waiters if w.wait.waiting)
        if admit(self.config, self.in_use, fn, ahead).granted:
            return self._grant(fn, ttl)
        return None

    def acquire(self, fn: str, ttl: float, wait: float) -> Step:
        """Take a lease, waiting up to ``wait`` seconds; ``Fail('no_connections_left')``."""
        yield self.sim.costs.store
        got = self.try_acquire(fn, ttl)
        if got is not None:
            return got
        if wait <= 0:
            raise Fail("no_connections_left")
        w = Waiter(fn, Wait(wait))
        self.waiters.append(w)
        self.n_waiting += 1
        self._arm()
        self.k.after(wait, self._uncount, w)
        got = yield w.wait
        if got is None:
            raise Fail("no_connections_left")
        yield self.sim.costs.store  # the woken waiter's own try_acquire
        return got

    def _arm(self) -> None:
        """With waiters queued, look again when the next lease expires: a waiter
        notices an expiry at its next poll (the client's jittered pause), not at once."""
        if not self.waiters or not self._heap:
            return
        t = self._heap[0][0] + spread_jitter(POLL_MAX * 2, self.sim.rng.random())
        if self._armed_at is None or t < self._armed_at:
            self._armed_at = t
            self.k.at(t, self._on_timer, t)

    def _on_timer(self, t: float) -> None:
        if self._armed_at != t:
            return  # superseded by an earlier timer
        self._armed_at = None
        self._wake()

    def _uncount(self, w: Waiter) -> None:
        if w.counted:
            w.counted = False
            self.n_waiting -= 1

    def _wake(self) -> None:
        self._expire()
        waiters = self.waiters
        ahead: list[str] = []
        while waiters:
            w = waiters[0]
            if not w.wait.waiting:
                waiters.popleft()
                continue
            if not admit(self.config, self.in_use, w.function, ahead).granted:
                break
            waiters.popleft()
            self._uncount(w)
            w.wait.fire(self._grant(w.function, self.sim.scenario.lease_ttl))
        self._arm()

    def renew(self, lid: int, ttl: float) -> float | None:
        self._expire()
        if lid not in self.expires:
            return None
        exp = self.k.now + ttl
        self.expires[lid] = exp
        heapq.heappush(self._heap, (exp, lid))
        return exp

    def release(self, lid: int) -> None:
        if lid in self.expires:
            self._drop(lid)
        self._wake()

    def waiting(self) -> int:
        return self.n_waiting

    def live(self) -> int:
        self._expire()
        return len(self.expires)

    def live_ids(self) -> set[int]:
        self._expire()
        return set(self.expires)


# -- the proxy's pool -----------------------------------------------------------------


class SimPool:
    """A transaction pool of at most ``size`` server sessions (fleetpool proxy, Data API).

    Returned connections go through :func:`~fleetpool.proxy.policy.plan_release`
    (hand over to the oldest waiter, or idle); the idle list is kept by
    :func:`~fleetpool.proxy.policy.plan_idle` once a second.
    """

    def __init__(self, sim: Sim, size: int, label: str) -> None:
        self.sim = sim
        self.size = size
        self.label = label
        self.total = 0
        self.idle: list[tuple[Session, proxy_policy.IdleInfo]] = []
        self.waiters: deque[tuple[Wait, float]] = deque()
        self.created: dict[int, float] = {}
        d = _PROXY_DEFAULTS
        self.idle_timeout = float(d["idle_timeout"])
        self.max_lifetime = float(d["max_lifetime"])
        self.jitter = float(d["lifetime_jitter"])
        self.borrow_timeout = float(d["connection_borrow_timeout"])
        self.health_check_interval = float(d["health_check_interval"])
        self.min_idle = int(d["min_idle"])
        sim.k.at(1.0, self._upkeep)

    def _expires(self, created: float) -> float:
        return proxy_policy.lifetime_deadline(
            created, self.max_lifetime, self.jitter, self.sim.rng.random()
        )

    def borrow(self) -> Step:
        sim = self.sim
        now = sim.k.now
        while self.idle:
            s, info = self.idle.pop()  # the most recently used: warm, and the old age out
            if not s.closed and proxy_policy.reusable(info, now):
                return s, info.expires
            self._forget(s)
        if self.total < self.size:
            self.total += 1
            attempt = 0
            while True:
                yield sim.costs.connect
                opened = sim.server.open(self.label, self.label)
                if opened is not None:
                    return opened, self._expires(sim.k.now)
                if attempt >= 5:
                    self.total -= 1
                    raise Fail("too_many_connections")
                yield proxy_policy.retry_delay(attempt, sim.rng.random())
                attempt += 1
        w = Wait(self.borrow_timeout)
        self.waiters.append((w, now))
        got = yield w
        if got is None:
            raise Fail("timeout")
        return got

    def _forget(self, s: Session) -> None:
        self.sim.server.close(s)
        self.total -= 1

    def give_back(self, s: Session, expires: float) -> None:
        now = self.sim.k.now
        while self.waiters and not self.waiters[0][0].waiting:
            self.waiters.popleft()
        action = proxy_policy.plan_release(
            not s.closed, False, now, expires, False, len(self.waiters), False, 0, 1, False
        )
        if action is proxy_policy.Release.HAND_OVER:
            self.waiters.popleft()[0].fire((s, expires))
        elif action is proxy_policy.Release.IDLE:
            self.idle.append((s, proxy_policy.IdleInfo(now - 0.0, now, expires, now)))
        else:
            self._forget(s)

    def _upkeep(self) -> None:
        now = self.sim.k.now
        infos = [info for _, info in self.idle]
        close, _check, _open = proxy_policy.plan_idle(
            infos,
            now,
            total=self.total,
            min_idle=self.min_idle,
            idle_timeout=self.idle_timeout,
            max_size=self.size,
            health_check_interval=self.health_check_interval,
        )
        if close:
            drop = set(close)
            for i in sorted(drop, reverse=True):
                s, _ = self.idle.pop(i)
                self._forget(s)
        if not self.sim.finished:
            self.sim.k.at(now + 1.0, self._upkeep)


# -- containers and strategies ------------------------------------------------------


class Box:
    """One container: its platform state and what its global section holds."""

    __slots__ = (
        "conn",
        "conn_known_closed",
        "connects",
        "id",
        "imported",
        "lease",
        "next_reap",
        "pool",
        "proxy_conn",
        "since",
        "state",
        "tag",
    )

    def __init__(self, cid: str, now: float) -> None:
        self.id = cid
        self.state = State.STARTING
        self.since = now
        self.conn: Session | None = None
        self.conn_known_closed = False
        self.connects = 0
        self.imported = False
        self.lease: tuple[int, float] | None = None
        self.next_reap = 0.0
        self.pool: list[Session] = []
        self.proxy_conn = False
        self.tag = ""


class Model:
    """One strategy's behaviour: its global section and its handler, as steps."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim

    def init(self, box: Box) -> Step:
        return
        yield

    def handle(self, box: Box, event: Any) -> Step:
        raise NotImplementedError
        yield


class Naive(Model):
    def handle(self, box: Box, event: Any) -> Step:
        # No ``finally`` in a model: a killed container's clean-up never runs, and a
        # generator dropped after a kill would run it when collected.
        sim = self.sim
        s = yield from sim.connect(box)
        try:
            yield from sim.work(s, event)
        except Fail:
            sim.server.close(s)
            raise
        sim.server.close(s)


class Global(Model):
    def init(self, box: Box) -> Step:
        box.conn = yield from self.sim.connect(box)

    def handle(self, box: Box, event: Any) -> Step:
        sim = self.sim
        if box.conn is None or box.conn_known_closed:
            box.conn = yield from sim.connect(box)
            box.conn_known_closed = False
        yield from sim.work_on(box, event)


class Pool(Model):
    def init(self, box: Box) -> Step:
        for _ in range(self.sim.scenario.pool_size):
            box.pool.append((yield from self.sim.connect(box)))
        box.conn = box.pool[0]

    def handle(self, box: Box, event: Any) -> Step:
        # One invocation at a time: the first connection is always the free one.
        yield from Global.handle(self, box, event)  # type: ignore[arg-type]


class Counter(Model):
    def handle(self, box: Box, event: Any) -> Step:
        sim = self.sim
        yield sim.costs.store
        if sim.counter <= 0:
            raise Fail("no_connections_left")
        sim.counter -= 1
        s = None
        try:
            s = yield from sim.connect(box)
            yield from sim.work(s, event)
        except Fail:
            yield from self._give_back(s)
            raise
        yield from self._give_back(s)  # a killed container never gets here: its slot leaks

    def _give_back(self, s: Session | None) -> Step:
        sim = self.sim
        if s is not None:
            sim.server.close(s)
        sim.counter = min(sim.counter + 1, sim.limit)
        yield sim.costs.store


class ZombieKiller(Model):
    def handle(self, box: Box, event: Any) -> Step:
        sim = self.sim
        if box.conn is None or box.conn_known_closed:
            box.conn = yield from self._connect(box)
            box.conn_known_closed = False
        try:
            yield from sim.work_on(box, event)
        except Fail as exc:
            if exc.reason != "connection_lost":
                raise
            box.conn = yield from self._connect(box)
            box.conn_known_closed = False
            yield from sim.work_on(box, event)
        yield from self._clean(box)

    def _connect(self, box: Box) -> Step:
        sim = self.sim
        for attempt in range(ZK_RETRIES + 1):
            try:
                return (yield from sim.connect(box))
            except Fail as exc:
                if attempt == ZK_RETRIES or exc.reason != "too_many_connections":
                    raise
                yield min(1.0, sim.rng.uniform(0.002, 3.0))
        raise AssertionError("unreachable")

    def _clean(self, box: Box) -> Step:
        sim = self.sim
        server = sim.server
        yield sim.costs.statement  # count our user's sessions
        # The server's limit as the strategy reads it: usable slots plus the observer's.
        if len(server.sessions) <= (sim.db_limit + 1) * ZK_UTILISATION:
            return
        yield sim.costs.statement
        now = sim.k.now
        min_idle = sim.scenario.zombie_min_idle
        for s in list(server.sessions.values()):
            if not s.active and s is not box.conn and now - s.since > min_idle:
                server.close(s)


class FleetpoolClient(Model):
    """``fleetpool.Database`` with a budget, as ``strategies/fleetpool_client.py`` uses it."""

    def __init__(self, sim: Sim) -> None:
        super().__init__(sim)
        self.backoff = EqualJitterBackoff(rng=sim.rng)
        self.idle_timeout = server_idle_timeout(sim.scenario.lease_ttl)
        self.fn = sim.scenario.function.name

    def handle(self, box: Box, event: Any) -> Step:
        sim = self.sim
        budget = sim.budget
        assert budget is not None
        ttl = sim.scenario.lease_ttl
        started = sim.k.now
        plan = plan_checkout(
            started,
            budgeted=True,
            lease_expires_at=box.lease[1] if box.lease else None,
            lease_ttl=ttl,
            has_connection=box.conn is not None,
        )
        if plan.drop_connection and box.conn is not None:
            sim.server.close(box.conn)
            box.conn = None
        if plan.acquire:
            box.lease = yield from budget.acquire(self.fn, ttl, sim.scenario.max_wait)
        elif plan.renew and box.lease is not None:
            yield sim.costs.store
            exp = budget.renew(box.lease[0], ttl)
            box.lease = None if exp is None else (box.lease[0], exp)
            if box.lease is None:  # lost while renewing: take a new one
                box.lease = yield from budget.acquire(self.fn, ttl, sim.scenario.max_wait)
        if box.conn is None or box.conn.closed:  # the driver sees a closed socket
            try:
                box.conn = yield from self._connect(box, started)
            except Fail:
                yield sim.costs.store
                if box.lease is not None:
                    budget.release(box.lease[0])
                box.lease = None
                raise
            yield from self._maybe_reap(box)
        yield from sim.work_on(box, event)
        report = SessionReport(broken=box.conn is None or box.conn.closed)
        if plan_checkin(report, keep=True).close and box.conn is not None:
            sim.server.close(box.conn)
            box.conn = None
        # The handler's yield: with others waiting, give the capacity back now.
        yield sim.costs.store
        if budget.waiting() > 0 and box.lease is not None:
            if box.conn is not None:
                sim.server.close(box.conn)
                box.conn = None
            yield sim.costs.store
            budget.release(box.lease[0])
            box.lease = None

    def _connect(self, box: Box, started: float) -> Step:
        sim = self.sim
        assert box.lease is not None
        box.tag = f"fp:sim:{box.lease[0]}"
        network_deadline = sim.k.now + CONNECT_TIMEOUT
        capacity_deadline = started + sim.scenario.max_wait
        attempt = 0
        while True:
            try:
                return (yield from sim.connect(box, box.tag, self.idle_timeout))
            except Fail as exc:
                kind = (
                    ErrorKind.CAPACITY
                    if exc.reason == "too_many_connections"
                    else ErrorKind.TRANSIENT
                )
                attempt += 1
                step = plan_connect_attempt(
                    kind,
                    delay=self.backoff.compute(attempt),
                    now=sim.k.now,
                    auth_retries=0,
                    network_deadline=network_deadline,
                    capacity_deadline=capacity_deadline,
                    refreshable=False,
                )
                if step is None:
                    raise
                yield float(step.pause or 0.0)

    def _maybe_reap(self, box: Box) -> Step:
        sim = self.sim
        budget = sim.budget
        assert budget is not None
        now = sim.k.now
        if not reap_check_due(now, box.next_reap):
            return
        box.next_reap = now + REAP_INTERVAL
        yield sim.costs.statement  # the utilisation query
        if not should_reap(len(sim.server.sessions), sim.db_limit, REAP_THRESHOLD):
            return
        yield sim.costs.store  # the fleet-wide reaper token
        if budget.reaper_until > sim.k.now:
            return
        budget.reaper_until = sim.k.now + REAP_INTERVAL
        yield sim.costs.statement + sim.costs.store  # the session list and the live leases
        now = sim.k.now
        live = {f"fp:sim:{lid}" for lid in budget.live_ids()}
        sessions = list(sim.server.sessions.values())
        rows = [
            SessionRow(s.id, True, s.tag, s.active, False, None if s.active else now - s.since)
            for s in sessions
            if s is not box.conn
        ]
        by_id = {s.id: s for s in sessions}
        for v in choose_victims(rows, tag_prefix="fp:sim:", live_tags=live, idle_after=None):
            sim.server.close(by_id[v.row.id])


class ProxyClient(Model):
    """A global connection to the proxy; each statement borrows a pooled server session."""

    def handle(self, box: Box, event: Any) -> Step:
        sim = self.sim
        if not box.proxy_conn:
            if not box.imported:
                yield from sim._import_driver(box)
            yield sim.costs.connect
            box.proxy_conn = True
            box.connects += 1
        yield from sim.pooled_work(event)


class DataApiClient(Model):
    """SQL over HTTP: no connection in the container at all."""

    def handle(self, box: Box, event: Any) -> Step:
        yield from self.sim.pooled_work(event)


MODELS: dict[str, type[Model]] = {
    "naive": Naive,
    "global": Global,
    "pool": Pool,
    "counter": Counter,
    "zombie-killer": ZombieKiller,
    "fleetpool": FleetpoolClient,
    "proxy": ProxyClient,
    "data-api": DataApiClient,
}


# -- one strategy's run ----------------------------------------------------------------


class Sim:
    """One strategy on the virtual clock: platform, database, budget, observer."""

    def __init__(self, scenario: Scenario, strategy: str, *, check: bool = False) -> None:
        if strategy not in MODELS:
            raise ConfigError(
                f"strategy {strategy!r} has no virtual-clock model; known: {', '.join(MODELS)}"
            )
        self.scenario = scenario
        self.strategy = strategy
        self.costs = scenario.costs
        self.k = Kernel()
        self.rng = random.Random(scenario.seed * 1_000_003 + sum(map(ord, strategy)))
        #: The database's usable connections, and the fleet's share (budget, counter, pool).
        self.db_limit = scenario.max_connections
        self.limit = scenario.limit or self.db_limit
        self.server = Server(self.k, self.db_limit)
        self.function = scenario.function
        for delay in (
            self.costs.cold_start, self.costs.connect, self.costs.statement, self.costs.store,
            scenario.workload.think, scenario.workload.slow_think, scenario.max_wait,
            scenario.function.timeout, scenario.function.idle_lifetime,
            server_idle_timeout(scenario.lease_ttl),
        ):  # fmt: skip
            self.k.line(delay)
        self.model = MODELS[strategy](self)
        self.budget = (
            SimBudget(self, BudgetConfig(self.limit), check=check)
            if strategy == "fleetpool"
            else None
        )
        self.counter = self.limit
        self.pool = (
            SimPool(self, self.limit, f"{strategy}:pool")
            if strategy in ("proxy", "data-api")
            else None
        )
        # A Data API request is an HTTP exchange with a signature to check: a few hops.
        self.hop = self.costs.hop * (4 if strategy == "data-api" else 1)
        self._proc: Proc | None = None
        # Frozen containers as a stack of (box, frozen since): the top is the most
        # recently frozen; entries a reclaim or a reuse made stale are skipped.
        self.frozen: list[tuple[Box, float]] = []
        self.counts = {s: 0 for s in State}
        self.boxes: list[Box] = []
        self.busy = 0
        self.starting = 0
        self.start_queue: deque[Wait] = deque()
        self.records: list[InvocationRecord] = []
        self.samples: list[dict[str, Any]] = []
        self.inflight = 0
        self.arrivals_done = False
        self.finished = False
        self.end_at = float("inf")

    # platform ---------------------------------------------------------------------------

    def _set(self, box: Box, to: State) -> None:
        self.counts[box.state] -= 1
        self.counts[to] += 1
        box.state = to
        box.since = self.k.now

    def _new_box(self) -> Box:
        box = Box(f"c{len(self.boxes) + 1:03d}", self.k.now)
        self.boxes.append(box)
        self.counts[State.STARTING] += 1
        return box

    def _freeze(self, box: Box) -> None:
        self._set(box, State.FROZEN)
        self.frozen.append((box, box.since))
        self.k.after(self.function.idle_lifetime, self._reclaim, box, box.since)

    def _cold_start(self) -> Step:
        yield from self._cpu(self.costs.cold_start)

    def _cpu(self, cost: float) -> Step:
        """Work of the host starting containers (a start, a driver's import): with
        ``cold_start_slots`` set, at most that many at once, the others queue."""
        slots = self.costs.cold_start_slots
        if not slots:
            yield cost
            return
        if self.starting >= slots:
            w = Wait(float("inf"))
            self.start_queue.append(w)
            yield w
        else:
            self.starting += 1
        yield cost
        if self.start_queue:
            self.start_queue.popleft().fire(True)  # the slot passes to the next in line
        else:
            self.starting -= 1

    def _reclaim(self, box: Box, since: float) -> None:
        if box.state is State.FROZEN and box.since == since:
            self._set(box, State.DEAD)  # SIGKILL: its sessions linger (no FIN)

    def invocation(self, arrival: Arrival) -> Step:
        k = self.k
        at = k.now
        proc = self._proc  # this invocation's process (set just before its first step)
        assert proc is not None
        frozen = self.frozen
        while frozen and not (
            frozen[-1][0].state is State.FROZEN and frozen[-1][0].since == frozen[-1][1]
        ):
            frozen.pop()
        if frozen:
            box = frozen.pop()[0]  # the most recently frozen, as scheduler.assign picks
            self._set(box, State.RUNNING)
            cold = False
        elif self.busy >= self.function.concurrency:
            self._record(arrival, at, at, False, "throttled", False, None)
            return
        else:
            box = self._new_box()
            cold = True
        self.busy += 1
        box.connects = 0
        if cold:
            yield from self._cold_start()
            try:
                yield from self.model.init(box)
            except Fail as exc:
                self._set(box, State.DEAD)
                self.busy -= 1
                self._record(arrival, at, at, False, exc.reason, True, box, init_failed=True)
                return
            self._set(box, State.RUNNING)
        start = k.now
        k.after(self.function.timeout, self._timeout, box, proc, arrival, at, cold)
        try:
            yield from self.model.handle(box, arrival.event)
        except Fail as exc:
            ok, reason = False, exc.reason
        else:
            ok, reason = True, "ok"
        proc.token += 1  # the timeout, if still pending, finds a finished invocation
        proc.alive = False
        self.busy -= 1
        self._freeze(box)
        self._record(arrival, at, start, ok, reason, cold, box)

    def _timeout(self, box: Box, proc: Proc, arrival: Arrival, at: float, cold: bool) -> None:
        if not proc.alive:
            return
        proc.kill()
        self.busy -= 1
        self._set(box, State.DEAD)
        self._record(arrival, at, at, False, "timeout", cold, box)

    def _record(
        self,
        arrival: Arrival,
        at: float,
        start: float,
        ok: bool,
        reason: str,
        cold: bool,
        box: Box | None,
        *,
        init_failed: bool = False,
    ) -> None:
        self.records.append(
            InvocationRecord(
                arrival.index,
                at,
                start,
                self.k.now,
                ok,
                reason,
                cold,
                box.id if box is not None else None,
                box.connects if box is not None else 0,
                arrival.slow,
                init_failed=init_failed,
            )
        )
        self.inflight -= 1
        self._maybe_end()

    # database steps ------------------------------------------------------------------

    def connect(self, box: Box, tag: str = "", idle_timeout: float = 0.0) -> Step:
        if not box.imported:
            yield from self._import_driver(box)
        yield self.costs.connect
        s = self.server.open(box, tag, idle_timeout)
        if s is None:
            raise Fail("too_many_connections")
        box.connects += 1
        return s

    def _import_driver(self, box: Box) -> Step:
        box.imported = True
        if self.costs.driver_import > 0:
            yield from self._cpu(self.costs.driver_import)

    def work(self, s: Session, event: Any) -> Step:
        """The workload on session ``s``: one statement, then the think time (held, idle)."""
        if s.closed:
            raise Fail("connection_lost")
        self.server.busy(s)
        yield self.costs.statement
        if s.closed:  # killed while it ran
            raise Fail("connection_lost")
        self.server.idle(s)
        think = float(event["think"])
        if think > 0:
            yield think

    def work_on(self, box: Box, event: Any) -> Step:
        """:meth:`work` on the container's warm connection; a lost one is known afterwards."""
        assert box.conn is not None
        try:
            yield from self.work(box.conn, event)
        except Fail:
            box.conn_known_closed = True
            raise

    def pooled_work(self, event: Any) -> Step:
        pool = self.pool
        assert pool is not None
        s, expires = yield from pool.borrow()
        self.server.busy(s)
        yield self.hop + self.costs.statement
        self.server.idle(s)
        pool.give_back(s, expires)
        think = float(event["think"])
        if think > 0:
            yield think

    # observer --------------------------------------------------------------------------

    def observe(self) -> dict[str, Any]:
        now = self.k.now
        zombie_after = self.scenario.lease_ttl
        by_state: dict[str, int] = {}
        owners = {"running": 0, "frozen": 0, "zombie": 0, "other": 0}
        active = 0
        for s in self.server.sessions.values():
            active += s.active
            box = s.owner
            if not isinstance(box, Box):
                owners["other"] += 1
            elif not s.active and is_zombie(box.state, now - box.since, zombie_after):
                owners["zombie"] += 1
            elif box.state is State.FROZEN or box.state is State.DEAD:
                owners["frozen"] += 1
            else:
                owners["running"] += 1
        total = len(self.server.sessions)
        if active:
            by_state["active"] = active
        if total - active:
            by_state["idle"] = total - active
        row: dict[str, Any] = {
            "t": round(now, 3),
            "server": {
                "total": total,
                "fleet": total,
                "other": 0,
                "by_state": by_state,
                "owners": owners,
            },
            "remaining": self.limit - total,
            "zombies": owners["zombie"],
            "containers": {s.value: n for s, n in self.counts.items()},
        }
        if self.budget is not None:
            live = self.budget.live()
            row["budget"] = {
                "in_use": live,
                "remaining": self.limit - live,
                "limit": self.limit,
                "waiting": self.budget.waiting(),
            }
        if self.strategy == "counter":
            row["counter"] = self.counter
        return row

    def _sample(self, interval: float) -> None:
        if self.finished:
            return
        self.samples.append(self.observe())
        self.k.at(self.k.now + interval, self._sample, interval)

    # the run -----------------------------------------------------------------------------

    def _feed(self, arrivals: Iterator[Arrival]) -> None:
        for arrival in arrivals:
            self.k.at(arrival.at, self._arrive, arrival, arrivals)
            return
        self.arrivals_done = True
        self._maybe_end()

    def _arrive(self, arrival: Arrival, arrivals: Iterator[Arrival]) -> None:
        self.inflight += 1
        self._proc = Proc(self.k, self.invocation(arrival))
        self._proc.resume(None)
        self._feed(arrivals)

    def _maybe_end(self) -> None:
        if self.arrivals_done and self.inflight == 0 and self.end_at == float("inf"):
            self.end_at = max(self.k.now + self.scenario.lease_ttl + 0.5, self.scenario.duration)

    def run(self) -> tuple[list[InvocationRecord], list[dict[str, Any]]]:
        interval = max(self.costs.sample_interval, self.scenario.duration / 600.0)
        self.k.at(0.0, self._sample, interval)
        self._feed(
            iter_schedule(list(self.scenario.phases), self.scenario.workload, self.scenario.seed)
        )
        self.k.run(lambda: self.end_at)
        self.k.now = max(self.k.now, self.end_at)
        self.finished = True
        self.samples.append(self.observe())
        self.records.sort(key=lambda r: r.index)
        return self.records, self.samples


def simulate_strategy(
    scenario: Scenario, strategy: str, *, check: bool = False, keep_invocations: int = 2000
) -> dict[str, Any]:
    """One strategy's result, shaped as :func:`fleetpool.fleet.run.run_strategy`'s.

    ``invocations`` keeps the first ``keep_invocations`` records only (a
    100,000-container run has millions); every figure is computed from all of them.
    ``check`` asserts the budget's invariants as the run goes.
    """
    started = time.monotonic()
    sim = Sim(scenario, strategy, check=check)
    records, samples = sim.run()
    limit = sim.limit
    result: dict[str, Any] = {
        "strategy": strategy,
        "description": DESCRIPTIONS.get(strategy, ""),
        "handler": REGISTRY[strategy].handler if strategy in REGISTRY else "",
        "wall_seconds": round(time.monotonic() - started, 2),
        "summary": summarize(
            records,
            samples,
            limit=limit,
            counter_limit=limit if strategy == "counter" else None,
        ),
        "series": series(records, samples, bucket=max(1.0, scenario.duration / 300.0)),
        "invocations": [r.as_dict() for r in records[:keep_invocations]],
        "observer_errors": 0,
        "virtual": {
            "containers": len(sim.boxes),
            "peak_live_leases": sim.budget.peak_live if sim.budget is not None else None,
            "simulated_seconds": round(sim.k.now, 3),
        },
    }
    if sim.pool is not None:
        result["proxy"] = {"pool_size": sim.pool.size}
    return result


def simulate_scenario(
    scenario: Scenario,
    *,
    on_strategy: Callable[[str, dict[str, Any]], None] | None = None,
    check: bool = False,
) -> dict[str, Any]:
    """Every strategy of ``scenario`` on the virtual clock: the run dict the report reads."""

    if scenario.handler:
        raise ConfigError(
            "a custom [function] handler cannot run on the virtual clock: its code is "
            "unknown to the model; run it with `fleetpool simulate` (real processes)"
        )
    started = time.monotonic()
    results = []
    for strategy in scenario.strategies:
        result = simulate_strategy(scenario, strategy, check=check)
        results.append(result)
        if on_strategy is not None:
            on_strategy(strategy, result)
    limit = scenario.limit or scenario.max_connections
    return {
        "fleetpool_fleet_report": 1,
        "virtual": True,
        "scenario": scenario_dict(scenario),
        "costs": asdict(scenario.costs),
        "database": {
            "engine": "postgresql",
            "version": "simulated database (virtual clock)",
            "limit": limit,
            "embedded": False,
            "dsn": None,
        },
        "host": host_info(),
        "wall_seconds": round(time.monotonic() - started, 1),
        "strategies": results,
        "skipped": [],
    }


__all__ = ["MODELS", "Sim", "simulate_scenario", "simulate_strategy"]
