"""Process plumbing: privilege drop, death signals, temp folders, ports and the reaper.

Strategy: every server a test starts must end, whatever happens to the test process.
A server's processes and folder belong to a ``Reaper`` that runs when the server is
closed, garbage-collected (``weakref.finalize``) or the interpreter exits (``atexit``);
servers started from the main thread also get ``PR_SET_PDEATHSIG`` so they die with a
SIGKILLed test process, and folders left by such a process are swept by the next one.
Every wait is bounded. Linux-only (``/proc``, ``prctl``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
READY_TIMEOUT = 30.0  # seconds a server may take to accept connections
STOP_TIMEOUT = 30.0  # seconds a graceful shutdown may take before SIGKILL
HELPER_TIMEOUT = 120.0  # initdb, mariadb-install-db, pg_basebackup


class ServerError(RuntimeError):
    """A throwaway server failed to start, to become ready, or to stop."""


def run_user(preferred: str) -> pwd.struct_passwd | None:
    """The unprivileged account to run a server as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in (preferred, "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServerError(f"running as root but neither {preferred!r} nor 'nobody' exists")


def user_kwargs(user: pwd.struct_passwd | None) -> dict[str, Any]:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def child_env(user: pwd.struct_passwd | None, home: Path) -> dict[str, str]:
    # PG* variables (PGHOST, PGPASSWORD, PGSSLMODE...) would leak into pg_basebackup & co.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    if user is not None:
        env.update(HOME=str(home), USER=user.pw_name, LOGNAME=user.pw_name)
    return env


_LIBC: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        _LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _deathsig_preexec(sig: int) -> Callable[[], None] | None:
    """A preexec_fn making the child receive ``sig`` when we die (main thread only:
    the kernel ties PDEATHSIG to the *thread* that forked)."""
    if _LIBC is None or threading.current_thread() is not threading.main_thread():
        return None
    prctl = _LIBC.prctl
    parent = os.getpid()

    def preexec() -> None:  # runs after the uid switch, which would clear it
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # parent died before prctl
            os.kill(os.getpid(), sig)

    return preexec


def spawn(
    argv: list[str],
    *,
    log: Path,
    cwd: Path,
    user: pwd.struct_passwd | None,
    deathsig: int,
) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=child_env(user, cwd),
            start_new_session=True,  # Ctrl-C reaches pytest, which stops us in order
            preexec_fn=_deathsig_preexec(deathsig),
            **user_kwargs(user),
        )


def run_helper(
    argv: list[str], *, log: Path, cwd: Path, user: pwd.struct_passwd | None, what: str
) -> None:
    with open(log, "ab") as out:
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=child_env(user, cwd),
                timeout=HELPER_TIMEOUT,
                **user_kwargs(user),
            )
        except subprocess.TimeoutExpired:
            raise ServerError(
                f"{what} took more than {HELPER_TIMEOUT:.0f} s\n{tail(log)}"
            ) from None
    if proc.returncode != 0:
        raise ServerError(f"{what} failed with exit code {proc.returncode}\n{tail(log)}")


def tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError as e:
        return f"(no log at {log}: {e})"
    return f"--- last {len(text)} lines of {log} ---\n" + "\n".join(text)


def proc_stat(pid: int) -> tuple[int, str] | None:
    """(ppid, start time) of a live process from /proc; None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # comm may contain spaces
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), fields[19]


def children(pid: int) -> list[tuple[int, str]]:
    out = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit() and (st := proc_stat(int(entry))) and st[0] == pid:
            out.append((int(entry), st[1]))
    return out


def alive(pid: int, start: str) -> bool:
    st = proc_stat(pid)
    return st is not None and st[1] == start


def chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def _traversable_by_others(path: Path) -> bool:
    for p in [path, *path.parents]:
        try:
            if not os.stat(p).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


_TMP_PREFIX = "fleetpool-test-"
_SWEPT: set[Path] = set()


def _sweep(base: Path) -> None:
    """Delete folders left by test processes that died without cleaning up (SIGKILL)."""
    if base in _SWEPT:
        return
    _SWEPT.add(base)
    for path in base.glob(_TMP_PREFIX + "*"):
        m = re.match(re.escape(_TMP_PREFIX) + r"[a-z-]+?-(\d+)-", path.name)
        if m and int(m.group(1)) != os.getpid() and proc_stat(int(m.group(1))) is None:
            shutil.rmtree(path, ignore_errors=True)


def make_tmpdir(kind: str, user: pwd.struct_passwd | None) -> Path:
    base = Path(tempfile.gettempdir())
    if user is not None and not _traversable_by_others(base):
        base = Path("/tmp")
    _sweep(base)
    path = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{kind}-{os.getpid()}-", dir=base))
    chown_tree(path, user)
    return path


_PORT_LOCK = threading.Lock()
_HANDED_PORTS: set[int] = set()


def free_port() -> int:
    """A free TCP port on 127.0.0.1, never the same twice in this process."""
    with _PORT_LOCK:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((HOST, 0))
                port = int(s.getsockname()[1])
            if port not in _HANDED_PORTS:
                _HANDED_PORTS.add(port)
                return port
    raise ServerError("could not find a free port on 127.0.0.1")


_LIVE: dict[int, Reaper] = {}
TEMPLATE_DIRS: list[Path] = []


class Reaper:
    """Everything a server leaves behind; callable once to get rid of it all.

    It holds no reference to the server, so it can run from ``weakref.finalize``.
    """

    def __init__(self, stop_signal: int) -> None:
        self.stop_signal = stop_signal
        self.proc: subprocess.Popen[bytes] | None = None
        self.orphans: list[tuple[int, str]] = []  # children left by a killed main process
        self.dirs: list[Path] = []
        _LIVE[id(self)] = self

    def stop(self, timeout: float) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # a frozen process cannot shut down
                os.kill(proc.pid, self.stop_signal)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        self.reap_orphans(timeout=5)

    def kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            self.orphans += children(proc.pid)
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)

    def reap_orphans(self, timeout: float) -> None:
        """Wait for the children of a killed process to exit; SIGKILL them if they don't."""
        deadline = time.monotonic() + timeout
        killed = False
        while True:
            self.orphans = [o for o in self.orphans if alive(*o)]
            if not self.orphans:
                return
            if time.monotonic() > deadline:
                if killed:
                    return
                for pid, _ in self.orphans:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                killed, deadline = True, time.monotonic() + 5
            time.sleep(0.02)

    def __call__(self) -> None:
        _LIVE.pop(id(self), None)
        try:
            self.stop(timeout=10)
        finally:
            for d in self.dirs:
                shutil.rmtree(d, ignore_errors=True)


@atexit.register
def _cleanup_all() -> None:
    for reaper in reversed(list(_LIVE.values())):
        with contextlib.suppress(Exception):
            reaper()
    for d in TEMPLATE_DIRS:
        shutil.rmtree(d, ignore_errors=True)
