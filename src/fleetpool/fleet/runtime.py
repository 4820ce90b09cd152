"""The code that runs *inside* an emulated container process.

Strategy: a container is one OS process that imports the handler module exactly
once (its global section), then serves invocations one at a time over a control
pipe, with Lambda's ``(event, context)`` signature so a real handler runs unchanged.
Nothing here imports more than the standard library: a container must stay light.

Fidelity detail -- "custody": when a serverless platform reclaims a container
it does not close its TCP connections (the micro-VM just vanishes; no FIN), so
the database keeps those sessions until a timeout or a reaper ends them. A killed
OS process would make the kernel close them, so each container hands a duplicate
of every TCP socket it opens to the emulator (``SCM_RIGHTS``); after a SIGKILL the
emulator's copy keeps the connection open and silent -- a real zombie -- until the
server ends it.

Handlers (and fleetpool's strategies) may call :func:`note_connect` after opening a
connection, so the run can count connects and attribute server sessions to
containers; it is a no-op outside a container.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

#: Seconds between the background scans for new sockets to hand over.
CUSTODY_SCAN = 0.05

_state: dict[str, Any] = {
    "connects": 0,
    "sessions": [],
    "custody": None,
    "sent": set(),
    "announce": [],
}
_lock = threading.Lock()


def in_container() -> bool:
    return _state["custody"] is not None or os.environ.get("FLEET_CONTAINER_ID") is not None


def note_connect(session_id: int | str | None = None) -> None:
    """Record that the handler opened a database connection (server session id if known)."""
    with _lock:
        _state["connects"] += 1
        if session_id is not None:
            _state["sessions"].append(session_id)
            _state["announce"].append(session_id)
    hand_over_sockets()


def note_session(session_id: int | str) -> None:
    """Record a server session id without counting a new connect."""
    with _lock:
        _state["sessions"].append(session_id)
        _state["announce"].append(session_id)
    hand_over_sockets()


def _take_notes() -> dict[str, Any]:
    with _lock:
        notes = {"connects": _state["connects"], "sessions": list(_state["sessions"])}
        _state["connects"] = 0
        _state["sessions"] = []
    return notes


def hand_over_sockets() -> None:
    """Send a duplicate of every TCP socket not yet handed over to the emulator.

    Session ids noted since the last call travel with them, at once: if this
    container is killed mid-invocation, the emulator still knows its sessions.
    """
    custody: socket.socket | None = _state["custody"]
    if custody is None:
        return
    with _lock:
        try:
            names = os.listdir("/proc/self/fd")
        except OSError:
            return
        fds: list[int] = []
        for name in names:
            fd = int(name)
            try:
                link = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if not link.startswith("socket:") or link in _state["sent"]:
                continue
            try:
                dup = socket.socket(fileno=os.dup(fd))
            except OSError:
                continue
            if dup.family in (socket.AF_INET, socket.AF_INET6) and dup.type == socket.SOCK_STREAM:
                _state["sent"].add(link)
                fds.append(dup.detach())
            else:
                os.close(dup.detach())
        announce, _state["announce"] = _state["announce"], []
        if not fds and not announce:
            return
        try:
            socket.send_fds(custody, [json.dumps({"sessions": announce}).encode()], fds)
        except OSError:
            pass
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _custody_loop() -> None:
    # Signals must reach the main thread: a Python handler only runs there, and
    # only if the signal interrupts the main thread's blocking read.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    while True:
        time.sleep(CUSTODY_SCAN)
        hand_over_sockets()


class Context:
    """Lambda's context object: the attributes handlers actually use."""

    def __init__(self, function_name: str, request_id: str, timeout: float, memory_mb: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = os.environ.get("FLEET_CONTAINER_ID", "local")
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def classify(exc: BaseException) -> str:
    """Name why an invocation failed, following ``__cause__`` / ``__context__``."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        reason = _classify_one(cur)
        if reason != "error":
            return reason
        cur = cur.__cause__ or cur.__context__
    return "error"


def _classify_one(exc: BaseException) -> str:
    names = {c.__name__ for c in type(exc).__mro__}
    if "NoConnectionsLeft" in names or "CapacityError" in names:
        return "no_connections_left"
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == "53300":
        return "too_many_connections"
    if sqlstate in ("57P01", "57P02", "57P03", "08006", "08003"):
        return "connection_lost"
    if sqlstate == "57P05":  # idle_session_timeout ended the session
        return "connection_lost"
    args = getattr(exc, "args", ())
    if type(exc).__module__.startswith("pymysql") and args and isinstance(args[0], int):
        code = args[0]
        if code in (1040, 1203):
            return "too_many_connections"
        if code in (2006, 2013, 1927, 4031):
            return "connection_lost"
        if code == 2003:
            return "connect_failed"
    msg = str(exc)
    # A refused connect carries no SQLSTATE in libpq's client-side error; the
    # server's FATAL text is the only signal there.
    if "too many clients" in msg or "remaining connection slots are reserved" in msg:
        return "too_many_connections"
    if "terminating connection" in msg or "server closed the connection" in msg:
        return "connection_lost"
    if "timeout expired" in msg or "connection timeout" in msg:
        return "connect_timeout"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "error"


def _error_info(exc: BaseException) -> dict[str, Any]:
    return {
        "error_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc)[:500],
        "reason": classify(exc),
        "trace": "".join(traceback.format_exception(exc))[-2000:],
    }


def _load(handler: str) -> Callable[[Any, Context], Any]:
    modname, _, funcname = handler.partition(":")
    module = importlib.import_module(modname)
    fn = getattr(module, funcname or "handler")
    if not callable(fn):
        raise TypeError(f"{handler} is not callable")
    return fn  # type: ignore[no-any-return]


def container_main(ctrl: Any, custody: socket.socket | None, spec: dict[str, Any]) -> None:
    """Entry point of a container process (``ctrl`` is a multiprocessing Connection)."""
    os.environ.update(spec.get("env", {}))
    log = spec.get("log")
    if log:
        # Like a platform's log stream: everything the container prints goes to one file.
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    _state["custody"] = custody
    module_ref: dict[str, Any] = {}

    def on_sigterm(signum: int, frame: object) -> None:
        # Graceful shutdown: give the handler module its hook, then leave.
        hook = module_ref.get("shutdown")
        if callable(hook):
            with contextlib.suppress(Exception):
                hook()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if custody is not None:
        threading.Thread(target=_custody_loop, daemon=True, name="custody").start()
    started = time.monotonic()
    try:
        fn = _load(spec["handler"])
        module_ref["shutdown"] = getattr(
            sys.modules[spec["handler"].partition(":")[0]], "shutdown", None
        )
    except BaseException as exc:  # the init phase failed, like a Lambda Init error
        hand_over_sockets()
        ctrl.send(
            {
                "type": "init_error",
                "pid": os.getpid(),
                **_error_info(exc),
                "init_ms": (time.monotonic() - started) * 1000,
                "notes": _take_notes(),
            }
        )
        return
    hand_over_sockets()
    ctrl.send(
        {
            "type": "ready",
            "pid": os.getpid(),
            "init_ms": (time.monotonic() - started) * 1000,
            "notes": _take_notes(),
        }
    )
    function_name = spec.get("function_name", "fleet")
    memory = int(spec.get("memory_mb", 128))
    while True:
        try:
            msg = ctrl.recv()
        except (EOFError, OSError):
            return
        if msg.get("type") != "invoke":
            return
        ctx = Context(function_name, msg["request_id"], float(msg["timeout"]), memory)
        t0 = time.monotonic()
        reply: dict[str, Any] = {"type": "result", "request_id": msg["request_id"]}
        try:
            result = fn(msg["event"], ctx)
            reply.update(ok=True, result=_jsonable(result))
        except Exception as exc:
            reply.update(ok=False, **_error_info(exc))
        reply["duration_ms"] = (time.monotonic() - t0) * 1000
        hand_over_sockets()
        reply["notes"] = _take_notes()
        try:
            ctrl.send(reply)
        except (OSError, ValueError):
            return


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return repr(value)
