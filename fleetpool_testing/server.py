"""The lifecycle every throwaway server shares, and template data folders.

Strategy: a subclass says how to prepare its folder, its command line and how to
probe readiness; ``Server`` starts it on a free loopback port (retrying another port
when it lost a race for one), waits for readiness with a bound, and offers stop, kill
(a crash), restart, freeze/thaw (SIGSTOP: up but silent) and close. ``initdb`` and
``mariadb-install-db`` run once per process into a template that each server copies.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from .processes import (
    HOST,
    READY_TIMEOUT,
    STOP_TIMEOUT,
    TEMPLATE_DIRS,
    Reaper,
    ServerError,
    chown_tree,
    free_port,
    make_tmpdir,
    run_user,
    spawn,
    tail,
)


def setting(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


class Server:
    """Common lifecycle: start (with readiness wait), stop, kill, restart, close."""

    kind: ClassVar[str] = "server"
    stop_signal: ClassVar[int] = signal.SIGTERM
    death_signal: ClassVar[int] = signal.SIGKILL
    run_as: ClassVar[str | None] = None  # system account used when we are root

    host: str
    port: int

    def __init__(self, port: int | None = None) -> None:
        self.host = HOST
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self._user = run_user(self.run_as) if self.run_as else None
        self.tmpdir = make_tmpdir(self.kind, self._user)
        self.log_path = self.tmpdir / "server.log"
        self.log_path.touch()
        chown_tree(self.log_path, self._user)  # the server may reopen it (--log-error)
        self._reaper = Reaper(self.stop_signal)
        self._reaper.dirs.append(self.tmpdir)
        self._finalizer = weakref.finalize(self, self._reaper)
        self._finalizer.atexit = False  # _cleanup_all handles exit, in order
        self._prepared = False
        self._started_once = False

    # -- subclass hooks
    def _prepare(self) -> None:
        """Create the data folder (first start only)."""

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _probe(self) -> None:
        """Raise unless the server accepts connections."""
        raise NotImplementedError

    def _after_first_start(self) -> None:
        """One-off setup once the server first accepts connections."""

    # -- lifecycle
    @property
    def pid(self) -> int | None:
        proc = self._reaper.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> Self:
        if self.running:
            return self
        if self._finalizer.alive is False:
            raise ServerError(f"{self!r} was closed")
        if not self._prepared:
            self._prepare()
            self._prepared = True
        self._reaper.reap_orphans(timeout=10)
        for attempt in range(5):
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._reaper.proc = spawn(
                self._argv(),
                log=self.log_path,
                cwd=self.tmpdir,
                user=self._user,
                deathsig=self.death_signal,
            )
            try:
                self._wait_ready()
                break
            except ServerError:
                fresh = self._log_since(offset)
                if self._fixed_port or attempt == 4 or "Address already in use" not in fresh:
                    raise
                self.port = free_port()  # lost a race for the port: try another
        if not self._started_once:
            self._started_once = True
            self._after_first_start()
        return self

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        proc = self._reaper.proc
        assert proc is not None
        deadline = time.monotonic() + timeout
        delay = 0.01
        last: BaseException | None = None
        while True:
            rc = proc.poll()
            if rc is not None:
                raise ServerError(
                    f"{self.kind} on {self.host}:{self.port} exited with code {rc} "
                    f"while starting\n{tail(self.log_path)}"
                )
            try:
                self._probe()
                return
            except Exception as e:
                last = e
            if time.monotonic() > deadline:
                self._reaper.kill()
                raise ServerError(
                    f"{self.kind} on {self.host}:{self.port} not ready after {timeout:.0f} s "
                    f"(last error: {last!r})\n{tail(self.log_path)}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful shutdown (SIGKILL after ``timeout``); data is kept for ``start()``."""
        self._reaper.stop(timeout)

    def kill(self) -> None:
        """SIGKILL the main server process: a crash. ``restart()``/``start()`` recover."""
        self._reaper.kill()

    def restart(self) -> Self:
        """Stop (if running) and start again on the same port with the same data."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and delete everything (idempotent)."""
        self._finalizer()

    def freeze(self) -> None:
        """SIGSTOP the main server process: it stays up but answers nothing.
        (For PostgreSQL that is the postmaster only: open sessions keep working.)"""
        if (pid := self.pid) is not None:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after ``freeze()``."""
        if (pid := self.pid) is not None:
            os.kill(pid, signal.SIGCONT)

    def pause(self, seconds: float) -> threading.Timer:
        """Freeze now and thaw after ``seconds`` in the background (returns the timer)."""
        self.freeze()
        timer = threading.Timer(seconds, self.thaw)
        timer.daemon = True
        timer.start()
        return timer

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state} {self.tmpdir}>"


_TEMPLATE_LOCK = threading.Lock()
_TEMPLATES: dict[tuple[str, ...], Path] = {}


def template(
    key: tuple[str, ...], user: pwd.struct_passwd | None, build: Callable[[Path, Path], None]
) -> Path:
    """A data folder built once per process by ``build(datadir, log)`` and then copied."""
    with _TEMPLATE_LOCK:
        if key in _TEMPLATES:
            return _TEMPLATES[key]
        root = make_tmpdir(f"{key[0]}-template", user)
        TEMPLATE_DIRS.append(root)
        build(root / "data", root / "build.log")
        _TEMPLATES[key] = root / "data"
        return root / "data"


def copy_template(template: Path, dest: Path, user: pwd.struct_passwd | None) -> None:
    shutil.copytree(template, dest, symlinks=True)
    chown_tree(dest, user)
