"""The platform: routes invocations to containers, freezes, thaws and reclaims them.

Strategy: every arrival runs on its own thread (invocations block on their
container, as a caller blocks on a synchronous invoke). Decisions -- warm, cold or
throttle; which frozen containers to reclaim -- come from the pure functions in
:mod:`fleetpool.fleet.scheduler` under one lock; process work (fork, SIGSTOP,
SIGCONT, SIGKILL) happens outside it. Every invocation's latency and outcome is
recorded, including throttles, init failures and timeouts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .container import Container, Custodian, Reply, mp_context
from .scheduler import FleetState, State, assign, expired, transition
from .traffic import Arrival

#: Reasons that mean "the database (or a counter/budget in front of it) had no connection left".
NO_CONNECTIONS_LEFT = ("too_many_connections", "no_connections_left")


@dataclass(frozen=True)
class FunctionConfig:
    """The emulated function's platform settings."""

    handler: str
    name: str = "fleet-demo"
    timeout: float = 3.0  # invocation timeout; the container is killed when it passes
    concurrency: int = 100  # reserved concurrency: more in flight are throttled
    idle_lifetime: float = 6.0  # a frozen container is reclaimed after this long
    kill_signal: str = "SIGKILL"  # or "SIGTERM" (then SIGKILL after ``grace``)
    grace: float = 0.5
    init_timeout: float = 10.0
    memory_mb: int = 128
    start_method: str = "forkserver"
    linger: bool = True  # killed containers' TCP connections stay open (no FIN)
    log_dir: str | None = None  # one log file per container (stdout + stderr)


@dataclass
class InvocationRecord:
    index: int
    arrival: float  # seconds since the run started
    start: float
    end: float
    ok: bool
    reason: str  # "ok", "throttled", "timeout", "too_many_connections", ...
    cold: bool = False
    container: str | None = None
    connects: int = 0
    slow: bool = False  # made to outlive the timeout by the scenario
    init_failed: bool = False
    error: str = ""
    init_ms: float = 0.0  # cold start: the container's global section
    result: Any = field(default=None, repr=False)  # the handler's return value (not in JSON)

    @property
    def latency_ms(self) -> float:
        return (self.end - self.arrival) * 1000.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("result", None)
        d["latency_ms"] = round(self.latency_ms, 3)
        for k in ("arrival", "start", "end"):
            d[k] = round(d[k], 4)
        return d


@dataclass
class ContainerView:
    state: State
    since: float
    pid: int
    sessions: list[Any] = field(default_factory=list)


class Fleet:
    """A running function: its containers and the invocations sent to it."""

    def __init__(
        self,
        function: FunctionConfig,
        env: Mapping[str, str],
        *,
        app_prefix: str,
        dsn_for: Callable[[str], str] | None = None,
    ) -> None:
        self.function = function
        self.env = dict(env)
        self.app_prefix = app_prefix
        self._dsn_for = dsn_for
        self.state = FleetState(function.concurrency, function.idle_lifetime)
        self.containers: dict[str, Container] = {}
        self.records: list[InvocationRecord] = []
        self.custodian = Custodian() if function.linger else None
        mp_context(function.start_method)
        self._lock = threading.Lock()
        self._n = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.t0 = time.monotonic()
        self._on_done: Callable[[InvocationRecord], None] | None = None
        self._reclaimer = threading.Thread(
            target=self._reclaim_loop, daemon=True, name="fleet-reclaimer"
        )
        self._reclaimer.start()

    # -- time ---------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.t0

    # -- containers ---------------------------------------------------------

    def _spec(self, cid: str) -> dict[str, Any]:
        app = f"{self.app_prefix}:{cid}"
        env = {
            **self.env,
            "FLEET_CONTAINER_ID": cid,
            "FLEET_APP_NAME": app,
            "AWS_LAMBDA_FUNCTION_NAME": self.function.name,
        }
        if self._dsn_for is not None:
            env["FLEET_DSN"] = self._dsn_for(app)
        log = os.path.join(self.function.log_dir, f"{cid}.log") if self.function.log_dir else None
        return {
            "handler": self.function.handler,
            "env": env,
            "log": log,
            "function_name": self.function.name,
            "memory_mb": self.function.memory_mb,
        }

    def _kill(self, container: Container) -> None:
        sig = getattr(signal, self.function.kill_signal, signal.SIGKILL)
        container.kill(sig, self.function.grace)

    def view(self) -> dict[str, ContainerView]:
        """Each container's state, since when, pid and known server sessions."""
        announced = self.custodian.sessions() if self.custodian is not None else {}
        with self._lock:
            return {
                cid: ContainerView(
                    slot.state,
                    slot.since,
                    self.containers[cid].pid if cid in self.containers else 0,
                    [
                        *announced.get(cid, ()),
                        *(self.containers[cid].server_sessions if cid in self.containers else ()),
                    ],
                )
                for cid, slot in self.state.slots.items()
            }

    def counts(self) -> dict[str, int]:
        with self._lock:
            return self.state.counts()

    def _reclaim_loop(self) -> None:
        while not self._stop.wait(0.1):
            with self._lock:
                victims = expired(self.state, self.now())
                for cid in victims:
                    transition(self.state, cid, State.DEAD, self.now())
                procs = [self.containers[c] for c in victims if c in self.containers]
            for c in procs:
                self._kill(c)

    # -- invocations ---------------------------------------------------------

    def invoke(self, arrival: Arrival) -> InvocationRecord:
        """Serve one invocation (blocking) and record it."""
        at = self.now()
        with self._lock:
            decision = assign(self.state, at)
            cid = decision.container
            if decision.kind == "warm" and cid is not None:
                transition(self.state, cid, State.RUNNING, at)
            elif decision.kind == "cold":
                self._n += 1
                cid = f"c{self._n:03d}"
                transition(self.state, cid, State.STARTING, at)
        if decision.kind == "throttle":
            return self._record(
                InvocationRecord(
                    arrival.index, at, at, self.now(), False, "throttled", slow=arrival.slow
                )
            )
        assert cid is not None
        cold = decision.kind == "cold"
        if cold:
            try:
                container = Container(
                    cid,
                    self._spec(cid),
                    custodian=self.custodian,
                    method=self.function.start_method,
                )
            except OSError as exc:
                self._mark_dead(cid)
                return self._record(
                    InvocationRecord(
                        arrival.index,
                        at,
                        at,
                        self.now(),
                        False,
                        "spawn_failed",
                        True,
                        cid,
                        slow=arrival.slow,
                        error=str(exc),
                    )
                )
            with self._lock:
                self.containers[cid] = container
            ready = container.wait_ready(self.function.init_timeout)
            if ready.kind != "ready":
                self._kill(container)
                self._mark_dead(cid)
                reason = (
                    ready.data.get("reason", "error")
                    if ready.kind == "init_error"
                    else ("init_timeout" if ready.kind == "timeout" else "crashed")
                )
                return self._record(
                    InvocationRecord(
                        arrival.index,
                        at,
                        at,
                        self.now(),
                        False,
                        reason,
                        True,
                        cid,
                        connects=int((ready.data.get("notes") or {}).get("connects", 0)),
                        slow=arrival.slow,
                        init_failed=True,
                        error=ready.data.get("message", ""),
                    )
                )
            init_connects = int((ready.data.get("notes") or {}).get("connects", 0))
            init_ms = float(ready.data.get("init_ms", 0.0))
            with self._lock:
                transition(self.state, cid, State.RUNNING, self.now())
        else:
            container = self.containers[cid]
            init_connects = 0
            init_ms = 0.0
        request_id = str(uuid.uuid4())
        started = self.now()
        reply = container.invoke(dict(arrival.event), request_id, self.function.timeout)
        rec = self._finish(arrival, at, cid, container, reply, cold, init_connects)
        rec.start = started
        rec.init_ms = round(init_ms, 1)
        return rec

    def _finish(
        self,
        arrival: Arrival,
        at: float,
        cid: str,
        container: Container,
        reply: Reply,
        cold: bool,
        init_connects: int,
    ) -> InvocationRecord:
        notes = reply.data.get("notes") or {}
        connects = init_connects + int(notes.get("connects", 0))
        if reply.kind == "result":
            ok = bool(reply.data.get("ok"))
            reason = "ok" if ok else str(reply.data.get("reason", "error"))
            container.freeze()
            with self._lock:
                transition(self.state, cid, State.FROZEN, self.now())
            return self._record(
                InvocationRecord(
                    arrival.index,
                    at,
                    at,
                    self.now(),
                    ok,
                    reason,
                    cold,
                    cid,
                    connects,
                    arrival.slow,
                    error=str(reply.data.get("message", "")),
                    result=reply.data.get("result"),
                )
            )
        # Timed out or died: the platform kills the container (no clean-up).
        container.kill(signal.SIGKILL)
        self._mark_dead(cid)
        reason = "timeout" if reply.kind == "timeout" else "crashed"
        return self._record(
            InvocationRecord(
                arrival.index, at, at, self.now(), False, reason, cold, cid, connects, arrival.slow
            )
        )

    def _mark_dead(self, cid: str) -> None:
        with self._lock:
            transition(self.state, cid, State.DEAD, self.now())

    def _record(self, rec: InvocationRecord) -> InvocationRecord:
        with self._lock:
            self.records.append(rec)
        if self._on_done is not None:
            with contextlib.suppress(Exception):
                self._on_done(rec)
        return rec

    def run(
        self,
        arrivals: list[Arrival],
        *,
        until: float | None = None,
        tail: float = 0.0,
        on_done: Callable[[InvocationRecord], None] | None = None,
    ) -> list[InvocationRecord]:
        """Fire ``arrivals`` at their times (relative to now), wait for all to finish.

        Then idle until ``until`` seconds after the start, and at least ``tail``
        seconds after the last invocation ended (so leases can expire).
        """
        self._on_done = on_done
        start = self.now()
        threads: list[threading.Thread] = []
        for arrival in arrivals:
            delay = start + arrival.at - self.now()
            if delay > 0 and self._stop.wait(delay):
                break
            t = threading.Thread(
                target=self.invoke, args=(arrival,), daemon=True, name=f"invoke-{arrival.index}"
            )
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        end = max([self.now() + tail, start + (until or 0.0)])
        left = end - self.now()
        if left > 0:
            self._stop.wait(left)
        return sorted(self.records, key=lambda r: r.index)

    def shutdown(self) -> None:
        """Kill every container and end the connections held in custody."""
        self._stop.set()
        self._reclaimer.join(2)
        with self._lock:
            procs = list(self.containers.values())
            for cid in list(self.state.slots):
                transition(self.state, cid, State.DEAD, self.now())
        for c in procs:
            c.kill(signal.SIGKILL)
        if self.custodian is not None:
            self.custodian.close()
