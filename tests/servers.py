"""Throwaway PostgreSQL, MariaDB, Redis and moto servers for tests.

Strategy:

* **Installed binaries, private everything.** Each server runs from the machine's own
  binaries (Debian packages, or the PostgreSQL bundled in the ``pgserver`` wheel) in its own
  temporary folder, on a free loopback port, with its own settings (``max_connections``
  above all). Tests never touch the system services on 5432/3306/6379.
* **Template copy.** ``initdb`` / ``mariadb-install-db`` run once per process into a
  template folder; every new server is a ``copytree`` of it (tens of milliseconds instead of
  a second or more).
* **Privilege drop.** PostgreSQL refuses to run as root and MariaDB wants not to, so when
  the euid is 0 their processes run as the ``postgres`` / ``mysql`` system user (``nobody``
  as a fallback) via ``subprocess``'s ``user=``/``group=``, and their folders are chowned
  to that user. Admin access needs no password: PostgreSQL trusts its private unix socket,
  MariaDB's ``root@localhost`` has no password on its private socket.
* **Cleanup, always.** A server's processes and folder belong to a small ``_Reaper`` that
  runs when the server is closed, garbage-collected (``weakref.finalize``) or the
  interpreter exits (``atexit``). Servers started from the main thread also get
  ``PR_SET_PDEATHSIG`` so they die with the test process even if it is SIGKILLed.
  Keep a reference to a server while you use it: a collected server is stopped.
* **Bounded waits.** Readiness, shutdown and helper commands all have timeouts; a server
  that does not come up raises ``ServerError`` with the tail of its log.

Only loopback addresses are used. Linux-only (``/proc``, ``prctl``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import glob
import importlib.util
import logging
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
import urllib.request
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import quote

__all__ = [
    "DEBIAN_PACKAGES",
    "HOST",
    "MariaDBServer",
    "MissingBinary",
    "MotoServer",
    "PostgresServer",
    "RedisServer",
    "ServerError",
    "free_port",
    "pg_bindir",
    "require_binary",
]

HOST = "127.0.0.1"
READY_TIMEOUT = 30.0  # seconds a server may take to accept connections
STOP_TIMEOUT = 30.0  # seconds a graceful shutdown may take before SIGKILL
HELPER_TIMEOUT = 120.0  # initdb, mariadb-install-db, pg_basebackup
APT_TIMEOUT = 900.0

# Which Debian package provides each binary we may need.
DEBIAN_PACKAGES: dict[str, str] = {
    "initdb": "postgresql",
    "postgres": "postgresql",
    "pg_ctl": "postgresql",
    "pg_basebackup": "postgresql",
    "psql": "postgresql-client",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "redis-server": "redis-server",
    "pgbouncer": "pgbouncer",
    "chromium": "chromium",
}
_PG_BINARIES = {"initdb", "postgres", "pg_ctl", "pg_basebackup", "psql"}
# Daemons live in sbin, which a non-root PATH often lacks.
_EXTRA_PATH = ("/usr/sbin", "/sbin", "/usr/local/sbin")


class MissingBinary(RuntimeError):
    """A server binary is not installed; the message says which Debian package to install."""

    def __init__(self, binary: str, package: str, detail: str = "") -> None:
        self.binary = binary
        self.package = package
        msg = (
            f"`{binary}` not found: install the Debian package {package!r} "
            f"(sudo apt-get install -y {package})"
        )
        super().__init__(msg + (f"; {detail}" if detail else ""))


class ServerError(RuntimeError):
    """A throwaway server failed to start, to become ready, or to stop."""


# --------------------------------------------------------------------------- binaries


_APT_TRIED: set[str] = set()
_APT_LOCK = threading.Lock()


def _apt_install(package: str) -> bool:
    """Try once per process to install a Debian package (root with apt-get only)."""
    with _APT_LOCK:
        if (
            package in _APT_TRIED
            or os.geteuid() != 0
            or shutil.which("apt-get") is None
            or os.environ.get("FLEETPOOL_NO_APT_INSTALL")
        ):
            return False
        first = not _APT_TRIED
        _APT_TRIED.add(package)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            if first:
                subprocess.run(
                    ["apt-get", "update", "-qq"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=APT_TIMEOUT,
                    check=True,
                )
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", package],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=APT_TIMEOUT,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return False
        pg_bindir.cache_clear()
        return True


def _which(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_PATH])
    return shutil.which(name, path=path)


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", path)) or (0,)


def _pg_candidates() -> Iterator[Path]:
    if env := os.environ.get("FLEETPOOL_PG_BINDIR"):
        yield Path(env)
    if pg_config := _which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            yield Path(out.stdout.strip())
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        yield Path(d)
    spec = importlib.util.find_spec("pgserver")  # locate only: importing it has side effects
    if spec is not None and spec.origin:
        yield Path(spec.origin).parent / "pginstall" / "bin"
    if initdb := _which("initdb"):
        yield Path(initdb).resolve().parent


@functools.cache
def pg_bindir() -> Path:
    """The newest usable PostgreSQL bin folder (one with initdb and postgres that run).

    Order: $FLEETPOOL_PG_BINDIR, ``pg_config --bindir``, /usr/lib/postgresql/*/bin (newest
    first), the ``pgserver`` wheel's ``pginstall/bin``, ``initdb`` on PATH.
    """
    user = _run_user("postgres")
    seen: set[Path] = set()
    for cand in _pg_candidates():
        if cand in seen:
            continue
        seen.add(cand)
        if not all(os.access(cand / b, os.X_OK) for b in ("initdb", "postgres")):
            continue
        # The unprivileged user must be able to run it (e.g. not inside /root).
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [str(cand / "postgres"), "-V"],
                capture_output=True,
                timeout=10,
                check=True,
                cwd="/",
                **_user_kwargs(user),
            )
            return cand
    raise MissingBinary("initdb", "postgresql", "nor a usable pgserver wheel")


def require_binary(name: str, *, install: bool = False) -> str:
    """Absolute path of ``name``, or ``MissingBinary`` naming the Debian package to install.

    With ``install=True`` (used by the pytest fixtures) a root process with apt-get tries
    ``apt-get install`` once before giving up (set FLEETPOOL_NO_APT_INSTALL=1 to forbid).
    """
    package = DEBIAN_PACKAGES.get(name, name)
    for attempt in range(2):
        if name in _PG_BINARIES:
            with contextlib.suppress(MissingBinary):
                path = pg_bindir() / name
                if os.access(path, os.X_OK):
                    return str(path)
        elif found := _which(name):
            return found
        if attempt or not install or not _apt_install(package):
            break
    raise MissingBinary(name, package)


def _first_binary(*names: str, install: bool = False) -> str:
    for name in names:  # preferred name first, then older aliases
        if found := _which(name):
            return found
    return require_binary(names[0], install=install)


# --------------------------------------------------------------------------- processes


def _run_user(preferred: str) -> pwd.struct_passwd | None:
    """The unprivileged account to run a server as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in (preferred, "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServerError(f"running as root but neither {preferred!r} nor 'nobody' exists")


def _user_kwargs(user: pwd.struct_passwd | None) -> dict[str, Any]:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _child_env(user: pwd.struct_passwd | None, home: Path) -> dict[str, str]:
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


def _spawn(
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
            env=_child_env(user, cwd),
            start_new_session=True,  # Ctrl-C reaches pytest, which stops us in order
            preexec_fn=_deathsig_preexec(deathsig),
            **_user_kwargs(user),
        )


def _run_helper(
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
                env=_child_env(user, cwd),
                timeout=HELPER_TIMEOUT,
                **_user_kwargs(user),
            )
        except subprocess.TimeoutExpired:
            raise ServerError(
                f"{what} took more than {HELPER_TIMEOUT:.0f} s\n{_tail(log)}"
            ) from None
    if proc.returncode != 0:
        raise ServerError(f"{what} failed with exit code {proc.returncode}\n{_tail(log)}")


def _tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError as e:
        return f"(no log at {log}: {e})"
    return f"--- last {len(text)} lines of {log} ---\n" + "\n".join(text)


def _proc_stat(pid: int) -> tuple[int, str] | None:
    """(ppid, start time) of a live process from /proc; None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # comm may contain spaces
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), fields[19]


def _children(pid: int) -> list[tuple[int, str]]:
    out = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit() and (st := _proc_stat(int(entry))) and st[0] == pid:
            out.append((int(entry), st[1]))
    return out


def _alive(pid: int, start: str) -> bool:
    st = _proc_stat(pid)
    return st is not None and st[1] == start


def _chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
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
        if m and int(m.group(1)) != os.getpid() and _proc_stat(int(m.group(1))) is None:
            shutil.rmtree(path, ignore_errors=True)


def _make_tmpdir(kind: str, user: pwd.struct_passwd | None) -> Path:
    base = Path(tempfile.gettempdir())
    if user is not None and not _traversable_by_others(base):
        base = Path("/tmp")
    _sweep(base)
    path = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{kind}-{os.getpid()}-", dir=base))
    _chown_tree(path, user)
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


# --------------------------------------------------------------------------- cleanup


_LIVE: dict[int, _Reaper] = {}
_TEMPLATE_DIRS: list[Path] = []


class _Reaper:
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
            self.orphans += _children(proc.pid)
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)

    def reap_orphans(self, timeout: float) -> None:
        """Wait for the children of a killed process to exit; SIGKILL them if they don't."""
        deadline = time.monotonic() + timeout
        killed = False
        while True:
            self.orphans = [o for o in self.orphans if _alive(*o)]
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
    for d in _TEMPLATE_DIRS:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- base


def _setting(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


class _Server:
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
        self._user = _run_user(self.run_as) if self.run_as else None
        self.tmpdir = _make_tmpdir(self.kind, self._user)
        self.log_path = self.tmpdir / "server.log"
        self.log_path.touch()
        _chown_tree(self.log_path, self._user)  # the server may reopen it (--log-error)
        self._reaper = _Reaper(self.stop_signal)
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
            self._reaper.proc = _spawn(
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
                    f"while starting\n{_tail(self.log_path)}"
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
                    f"(last error: {last!r})\n{_tail(self.log_path)}"
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


def _template(
    key: tuple[str, ...], user: pwd.struct_passwd | None, build: Callable[[Path, Path], None]
) -> Path:
    """A data folder built once per process by ``build(datadir, log)`` and then copied."""
    with _TEMPLATE_LOCK:
        if key in _TEMPLATES:
            return _TEMPLATES[key]
        root = _make_tmpdir(f"{key[0]}-template", user)
        _TEMPLATE_DIRS.append(root)
        build(root / "data", root / "build.log")
        _TEMPLATES[key] = root / "data"
        return root / "data"


def _copy_template(template: Path, dest: Path, user: pwd.struct_passwd | None) -> None:
    shutil.copytree(template, dest, symlinks=True)
    _chown_tree(dest, user)


# --------------------------------------------------------------------------- PostgreSQL


AUTH_METHODS = ("trust", "md5", "scram-sha-256")


class PostgresServer(_Server):
    """A private PostgreSQL on 127.0.0.1 (superuser ``postgres``, database ``postgres``).

    ``max_connections`` is exact for every role: ``superuser_reserved_connections`` is 0
    unless ``settings`` says otherwise. Note a full server then refuses ``execute()`` too.
    ``auth`` applies to TCP (the ``dsn``); the admin path (unix socket) is always trust.
    ``replication=True`` enables WAL senders so ``standby_of()`` can follow it.
    """

    kind = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown
    death_signal = signal.SIGQUIT  # immediate shutdown if the test process dies
    run_as = "postgres"
    superuser = "postgres"
    database = "postgres"

    def __init__(
        self,
        max_connections: int = 50,
        settings: Mapping[str, object] | None = None,
        port: int | None = None,
        *,
        auth: str = "trust",
        password: str | None = None,
        replication: bool = False,
    ) -> None:
        if auth not in AUTH_METHODS:
            raise ValueError(f"auth must be one of {AUTH_METHODS}, not {auth!r}")
        if auth != "trust" and not password:
            raise ValueError(f"auth={auth!r} needs password=")
        self.bindir = pg_bindir()
        super().__init__(port)
        self.max_connections = max_connections
        self.settings = dict(settings or {})
        self.auth = auth
        self.password = password
        self.replication = replication
        self.datadir = self.tmpdir / "data"
        self.socket_dir = self.tmpdir / "sock"
        self._primary: PostgresServer | None = None

    # -- connection strings
    @property
    def dsn(self) -> str:
        cred = self.superuser
        if self.password:
            cred += ":" + quote(self.password, safe="")
        return f"postgresql://{cred}@{self.host}:{self.port}/{self.database}"

    @property
    def admin_conninfo(self) -> str:
        """libpq conninfo over the private unix socket (trust, no password)."""
        return f"host={self.socket_dir} port={self.port} user={self.superuser} dbname=postgres"

    # -- setup
    def _prepare(self) -> None:
        self.socket_dir.mkdir(mode=0o700)
        _chown_tree(self.socket_dir, self._user)
        if self._primary is not None:
            self._basebackup(self._primary)
        else:
            template = _template(("postgres", str(self.bindir)), self._user, self._initdb)
            _copy_template(template, self.datadir, self._user)
        method = self.auth
        (self.datadir / "pg_hba.conf").write_text(
            "# written by tests/servers.py\n"
            "local all all trust\n"
            "local replication all trust\n"
            f"host all all 127.0.0.1/32 {method}\n"
            f"host replication all 127.0.0.1/32 {method}\n"
        )
        _chown_tree(self.datadir / "pg_hba.conf", self._user)

    def _initdb(self, datadir: Path, log: Path) -> None:
        _run_helper(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(datadir),
                "-U",
                self.superuser,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            log=log,
            cwd=datadir.parent,
            user=self._user,
            what=f"initdb ({self.bindir})",
        )

    def _basebackup(self, primary: PostgresServer) -> None:
        _run_helper(
            [
                require_binary("pg_basebackup"),
                "-h",
                str(primary.socket_dir),
                "-p",
                str(primary.port),
                "-U",
                primary.superuser,
                "-D",
                str(self.datadir),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
                "-w",
            ],
            log=self.log_path,
            cwd=self.tmpdir,
            user=self._user,
            what=f"pg_basebackup from {primary.host}:{primary.port}",
        )

    def _argv(self) -> list[str]:
        gucs: dict[str, object] = {
            "listen_addresses": self.host,
            "max_connections": self.max_connections,
            "superuser_reserved_connections": 0,
            "fsync": False,
            # synchronous_commit stays on: with fsync=off it costs a write(), and kill()
            # then never loses an acknowledged commit (crash/failover tests rely on it).
            "full_page_writes": False,
            "shared_buffers": "16MB",
            "logging_collector": False,
            "password_encryption": "md5" if self.auth == "md5" else "scram-sha-256",
        }
        if self.replication:
            gucs.update(
                wal_level="replica",
                max_wal_senders=10,
                max_replication_slots=10,
                wal_keep_size="256MB",
                hot_standby=True,
            )
        else:
            gucs.update(wal_level="minimal", max_wal_senders=0)
        gucs.update(self.settings)
        argv = [
            str(self.bindir / "postgres"),
            "-D",
            str(self.datadir),
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
        ]
        for name, value in gucs.items():
            argv += ["-c", f"{name}={_setting(value)}"]
        return argv

    def _probe(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_conninfo, connect_timeout=2):
            pass

    def _after_first_start(self) -> None:
        if self.password and self._primary is None:
            from psycopg import sql

            self.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(self.superuser), sql.Literal(self.password)
                )
            )

    # -- admin helpers
    def execute(self, query: Any, params: Any = None) -> list[tuple[Any, ...]] | None:
        """Run admin SQL over the private socket (autocommit); rows, or None if no result."""
        import psycopg

        with psycopg.connect(self.admin_conninfo, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description is not None else None

    def connect(self, **kwargs: Any) -> Any:
        """A psycopg connection to ``dsn`` over TCP (autocommit unless told otherwise)."""
        import psycopg

        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 5)
        return psycopg.connect(self.dsn, **kwargs)

    # -- replication
    @classmethod
    def standby_of(cls, primary: PostgresServer, **kwargs: Any) -> PostgresServer:
        """Start a streaming hot standby of ``primary`` (which needs ``replication=True``).

        It copies the primary's max_connections, settings and auth unless overridden.
        """
        if not primary.replication:
            raise ValueError("the primary must be started with replication=True")
        if not primary.running:
            raise ServerError(f"{primary!r} is not running")
        kwargs.setdefault("max_connections", primary.max_connections)
        kwargs["settings"] = {**primary.settings, **(kwargs.get("settings") or {})}
        kwargs.setdefault("auth", primary.auth)
        kwargs.setdefault("password", primary.password)
        kwargs["replication"] = True
        standby = cls(**kwargs)
        standby._primary = primary
        return standby.start()

    @property
    def in_recovery(self) -> bool:
        rows = self.execute("SELECT pg_is_in_recovery()")
        return bool(rows and rows[0][0])

    def promote(self, timeout: float = READY_TIMEOUT) -> None:
        """Promote this standby to a primary and wait until it accepts writes."""
        self.execute("SELECT pg_promote(true, %s)", (int(timeout),))
        deadline = time.monotonic() + timeout
        while self.in_recovery:
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self!r} still in recovery after promote\n{_tail(self.log_path)}"
                )
            time.sleep(0.05)


# --------------------------------------------------------------------------- MariaDB


class MariaDBServer(_Server):
    """A private MariaDB on 127.0.0.1: ``root`` (no password unless ``password=``), db ``test``.

    MariaDB's smallest ``max_connections`` is 10 (smaller values raise ``ValueError`` here
    rather than being silently raised to 10 by the server), and a SUPER user such as root
    may open one connection beyond it; use a plain user to see exactly ``max_connections``.
    ``execute()`` uses root over the private socket, which never needs a password.
    """

    kind = "mariadb"
    stop_signal = signal.SIGTERM
    death_signal = signal.SIGKILL
    run_as = "mysql"
    database = "test"

    def __init__(
        self,
        max_connections: int = 50,
        settings: Mapping[str, object] | None = None,
        port: int | None = None,
        *,
        password: str | None = None,
    ) -> None:
        if max_connections < 10:
            raise ValueError(
                f"MariaDB clamps max_connections to at least 10 (asked for {max_connections})"
            )
        self.mariadbd = _first_binary("mariadbd", "mysqld")
        self.install_db = _first_binary("mariadb-install-db", "mysql_install_db")
        super().__init__(port)
        self.max_connections = max_connections
        self.settings = dict(settings or {})
        self.password = password
        self.datadir = self.tmpdir / "data"
        self.socket_path = self.tmpdir / "mysqld.sock"

    _COMMON = ("--innodb-log-file-size=8M",)

    @property
    def dsn(self) -> str:
        cred = "root" + (":" + quote(self.password, safe="") if self.password else "")
        return f"mysql://{cred}@{self.host}:{self.port}/{self.database}"

    def _prepare(self) -> None:
        template = _template(("mariadb", self.mariadbd), self._user, self._install_db)
        _copy_template(template, self.datadir, self._user)

    def _install_db(self, datadir: Path, log: Path) -> None:
        _run_helper(
            [
                self.install_db,
                "--no-defaults",
                "--auth-root-authentication-method=normal",
                f"--datadir={datadir}",
                "--skip-test-db",
                "--skip-name-resolve",
                *self._COMMON,
            ],
            log=log,
            cwd=datadir.parent,
            user=self._user,
            what="mariadb-install-db",
        )

    def _argv(self) -> list[str]:
        opts: dict[str, object] = {
            "max-connections": self.max_connections,
            "max-connect-errors": 1_000_000,  # tests provoke many failed logins
            "innodb-buffer-pool-size": "16M",
            "innodb-flush-log-at-trx-commit": 2,
            "innodb-doublewrite": 0,
            "character-set-server": "utf8mb4",
            "collation-server": "utf8mb4_general_ci",
        }
        opts.update({k.replace("_", "-"): v for k, v in self.settings.items()})
        return [
            self.mariadbd,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket_path}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            f"--pid-file={self.tmpdir / 'mysqld.pid'}",
            f"--log-error={self.log_path}",
            f"--tmpdir={self.tmpdir}",
            "--skip-name-resolve",
            "--skip-log-bin",
            *self._COMMON,
            *(
                f"--{k}={_setting(v).upper() if isinstance(v, bool) else v}"
                for k, v in opts.items()
            ),
        ]

    def _admin(self) -> Any:
        import pymysql

        return pymysql.connect(
            unix_socket=str(self.socket_path), user="root", autocommit=True, connect_timeout=5
        )

    def _probe(self) -> None:
        self._admin().close()

    def _after_first_start(self) -> None:
        self.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
        if self.password:
            for host in ("127.0.0.1", "::1"):
                self.execute(f"ALTER USER 'root'@'{host}' IDENTIFIED BY %s", (self.password,))

    def execute(self, query: str, params: Any = None) -> list[tuple[Any, ...]] | None:
        """Run admin SQL as root over the private socket; rows, or None if no result."""
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return list(cur.fetchall()) if cur.description is not None else None
        finally:
            conn.close()

    def connect(self, **kwargs: Any) -> Any:
        """A PyMySQL connection to 127.0.0.1 (root, database ``test`` unless overridden)."""
        import pymysql

        kwargs.setdefault("user", "root")
        kwargs.setdefault("password", self.password or "")
        kwargs.setdefault("database", self.database)
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 5)
        return pymysql.connect(host=self.host, port=self.port, **kwargs)


# --------------------------------------------------------------------------- Redis


class RedisServer(_Server):
    """A private redis-server on 127.0.0.1 without persistence (restart empties it).

    ``freeze()``/``thaw()``/``pause(seconds)``/``frozen()`` simulate an unreachable store:
    connections are accepted by the kernel but nothing answers.
    """

    kind = "redis"
    stop_signal = signal.SIGTERM
    death_signal = signal.SIGKILL

    def __init__(
        self,
        port: int | None = None,
        settings: Mapping[str, object] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = require_binary("redis-server")
        super().__init__(port)
        self.settings = dict(settings or {})
        #: Raw command-line arguments, for directives of several words
        #: (``--rename-command FCALL ""``).
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _argv(self) -> list[str]:
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.tmpdir),
            "--daemonize",
            "no",
        ]
        for k, v in self.settings.items():
            argv += [f"--{k}", str(v)]
        return argv + self.extra_args

    def _probe(self) -> None:
        with socket.create_connection((self.host, self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            if not s.recv(64).startswith(b"+PONG"):
                raise ServerError("redis did not answer PING")


# --------------------------------------------------------------------------- moto


class MotoServer:
    """moto's server mode on 127.0.0.1, standing in for DynamoDB, Secrets Manager & co.

    It runs in a thread of this process. ``env`` holds fake credentials; ``apply_env()``
    puts them in ``os.environ`` (for boto3 here and in subprocesses) until exit.
    """

    env: ClassVar[dict[str, str]] = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    region = "us-east-1"

    def __init__(self, port: int | None = None) -> None:
        self.host = HOST
        self.port = port or 0
        self._server: Any = None

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise ServerError("MotoServer is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        if self._server is not None:
            return self
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request to stderr unless its logger has a level.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        server.start()
        self.port = int(server.get_host_and_port()[1])
        self._server = server
        atexit.register(self.stop)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError as e:
                if time.monotonic() > deadline:
                    raise ServerError(f"moto on {self.endpoint_url} not ready: {e!r}") from e
                time.sleep(0.05)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    close = stop

    def reset(self) -> None:
        """Forget every resource (all services)."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    @contextlib.contextmanager
    def apply_env(self) -> Iterator[None]:
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` pointed at this server with fake credentials."""
        import boto3

        kwargs.setdefault("region_name", self.region)
        kwargs.setdefault("aws_access_key_id", self.env["AWS_ACCESS_KEY_ID"])
        kwargs.setdefault("aws_secret_access_key", self.env["AWS_SECRET_ACCESS_KEY"])
        kwargs.setdefault("aws_session_token", self.env["AWS_SESSION_TOKEN"])
        return boto3.client(service, endpoint_url=self.endpoint_url, **kwargs)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
