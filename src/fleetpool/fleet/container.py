"""One emulated container: a real OS process, frozen while idle, killed when reclaimed.

Strategy: processes come from a ``forkserver`` that has preloaded only the
runtime and the database drivers, so a cold start costs a fork plus the handler
module's import (its global section, which runs once per container, after the
fork) -- not a fresh interpreter. ``spawn`` is available for full isolation.

Idle containers are frozen with SIGSTOP: their TCP connections stay open but
silent, as on a serverless platform. Reclaiming sends SIGKILL (no clean-up) or
SIGTERM plus a grace period. The :class:`Custodian` keeps a duplicate of every
TCP socket a container opened, so a killed container's sessions linger on the
server as zombies until the server (idle timeout, keepalive) or a reaper ends them.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import forkserver
from multiprocessing.context import BaseContext
from typing import Any

from .runtime import container_main

_contexts: dict[str, BaseContext] = {}
_ctx_lock = threading.Lock()


#: Libraries the forkserver imports once, like a warm runtime image with the
#: function's dependencies installed. Handler modules are never preloaded: their
#: global section runs in each container, after the fork.
PRELOAD = (
    "fleetpool.fleet.runtime",
    "psycopg",
    "pymysql",
    "sqlite3",
    "fleetpool.client.database",
    "fleetpool.budget.sqlite",
    "fleetpool.fleet.strategies._workload",
)


def mp_context(method: str = "forkserver") -> BaseContext:
    """The multiprocessing context containers are started from (created once)."""
    with _ctx_lock:
        ctx = _contexts.get(method)
        if ctx is None:
            ctx = multiprocessing.get_context(method)
            if method == "forkserver":
                preload = ["__main__"]
                for mod in PRELOAD:
                    try:
                        __import__(mod)
                    except Exception:
                        continue
                    preload.append(mod)
                ctx.set_forkserver_preload(preload)  # type: ignore[attr-defined]
                # Start it now, so the first cold start does not pay for the preload.
                forkserver.ensure_running()
            _contexts[method] = ctx
        return ctx


@dataclass
class Reply:
    """What came back from a container for one request."""

    kind: str  # "ready", "init_error", "result", "timeout", "died"
    data: dict[str, Any] = field(default_factory=dict)


class Custodian:
    """Holds duplicates of containers' TCP sockets; drops those the server has closed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inbox: dict[str, socket.socket] = {}
        self._held: dict[str, list[socket.socket]] = {}
        self._sessions: dict[str, list[Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="fleet-custodian")
        self._thread.start()

    def channel(self, container: str) -> socket.socket:
        """A new socket pair: returns the container's end; keeps ours."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        with self._lock:
            self._inbox[container] = ours
            self._held.setdefault(container, [])
        return theirs

    def sessions(self) -> dict[str, list[Any]]:
        """Server session ids each container announced (as soon as it connected)."""
        with self._lock:
            return {cid: list(v) for cid, v in self._sessions.items()}

    def held(self, container: str | None = None) -> int:
        with self._lock:
            if container is not None:
                return len(self._held.get(container, []))
            return sum(len(v) for v in self._held.values())

    def _receive(self) -> None:
        with self._lock:
            inbox = list(self._inbox.items())
        for cid, sock in inbox:
            while True:
                try:
                    msg, fds, _flags, _addr = socket.recv_fds(sock, 65536, 64)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    msg, fds = b"", []
                if not msg and not fds:
                    with self._lock:
                        self._inbox.pop(cid, None)
                    sock.close()
                    break
                sessions: list[Any] = []
                with contextlib.suppress(ValueError):
                    sessions = list(json.loads(msg or b"{}").get("sessions", []))
                with self._lock:
                    self._held.setdefault(cid, []).extend(socket.socket(fileno=fd) for fd in fds)
                    self._sessions.setdefault(cid, []).extend(sessions)

    def _sweep(self) -> None:
        """Close our copy of sockets whose server side has gone (FIN received or reset)."""
        with self._lock:
            items = [s for lst in self._held.values() for s in lst]
        gone = [s for s in items if _peer_gone(s)]
        if not gone:
            return
        with self._lock:
            for cid, lst in self._held.items():
                self._held[cid] = [s for s in lst if s not in gone]
        for s in gone:
            with contextlib.suppress(OSError):
                s.close()

    def _loop(self) -> None:
        last_sweep = 0.0
        while not self._stop.is_set():
            self._receive()
            now = time.monotonic()
            if now - last_sweep >= 0.25:
                self._sweep()
                last_sweep = now
            self._stop.wait(0.02)

    def release(self, container: str | None = None) -> None:
        """Close held sockets (of one container, or all): the connections end now."""
        self._receive()
        with self._lock:
            keys = [container] if container is not None else list(self._held)
            socks = [s for k in keys for s in self._held.pop(k, [])]
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.release()
        with self._lock:
            for s in self._inbox.values():
                s.close()
            self._inbox.clear()


#: Linux TCP states (tcp_states.h) in which the connection can still carry a session.
_LIVE_TCP_STATES = (1, 2, 3)  # ESTABLISHED, SYN_SENT, SYN_RECV


def _peer_gone(s: socket.socket) -> bool:
    # Never read: a live container may share this socket. TCP_INFO's first byte
    # is the connection state; CLOSE_WAIT means the server sent its FIN.
    try:
        info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except OSError:
        return True
    return info[0] not in _LIVE_TCP_STATES


class Container:
    """Parent-side handle of one container process."""

    def __init__(
        self,
        container_id: str,
        spec: dict[str, Any],
        *,
        custodian: Custodian | None,
        method: str = "forkserver",
    ) -> None:
        self.id = container_id
        self.spec = spec
        self.custodian = custodian
        ctx = mp_context(method)
        self._conn, child = ctx.Pipe(duplex=True)
        custody = custodian.channel(container_id) if custodian else None
        self.process = ctx.Process(  # type: ignore[attr-defined]
            target=container_main,
            args=(child, custody, spec),
            daemon=False,
            name=f"fleet-{container_id}",
        )
        self.process.start()
        child.close()
        if custody is not None:
            custody.close()
        self.pid: int = self.process.pid or 0
        self.frozen = False
        self.dead = False
        self.server_sessions: list[Any] = []

    def _recv(self, timeout: float) -> Reply:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return Reply("timeout")
            try:
                ready = multiprocessing.connection.wait(
                    [self._conn, self.process.sentinel], timeout=left
                )
            except OSError:
                return Reply("died")
            if self._conn in ready:
                try:
                    data = self._conn.recv()
                except (EOFError, OSError):
                    return Reply("died")
                notes = data.get("notes") or {}
                self.server_sessions.extend(notes.get("sessions", []))
                return Reply(str(data.get("type")), data)
            if self.process.sentinel in ready:
                return Reply("died")

    def wait_ready(self, timeout: float) -> Reply:
        reply = self._recv(timeout)
        if reply.kind == "ready":
            self.pid = int(reply.data.get("pid", self.pid))
        return reply

    def invoke(self, event: Any, request_id: str, timeout: float) -> Reply:
        self.thaw()
        try:
            self._conn.send(
                {"type": "invoke", "event": event, "request_id": request_id, "timeout": timeout}
            )
        except (OSError, ValueError):
            return Reply("died")
        return self._recv(timeout)

    def freeze(self) -> None:
        if not self.dead and not self.frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        if not self.dead and self.frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
            self.frozen = False

    def kill(self, sig: int = signal.SIGKILL, grace: float = 0.0) -> None:
        """Reclaim: SIGKILL at once, or SIGTERM and SIGKILL after ``grace`` seconds."""
        if self.dead:
            return
        self.dead = True
        try:
            if sig == signal.SIGKILL:
                os.kill(self.pid, signal.SIGKILL)
            else:
                os.kill(self.pid, sig)
                os.kill(self.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
                self.process.join(grace)
                if self.process.is_alive():
                    os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.join(5)
        self._conn.close()
