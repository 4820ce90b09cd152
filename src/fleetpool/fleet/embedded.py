"""An embedded PostgreSQL for the demo and the fleet tests.

Strategy: run the real server binaries, never a mock, so connection limits,
``pg_stat_activity`` and session timeouts behave exactly as in production.
The binaries come from the system (``pg_config --bindir``, ``/usr/lib/postgresql/*/bin``)
or from the ``pgserver`` wheel. PostgreSQL refuses to run as root, so when we are
root the cluster is owned and run by an unprivileged user (``postgres`` if it
exists, else ``nobody``) in a private temp dir, on a free loopback port.

Two roles: the superuser ``postgres`` (the observer, with
``superuser_reserved_connections`` slots that the workload cannot take, so it can
still look when the server is full) and ``fleet``, an ordinary role the workload uses.
A superuser's session also occupies one of the ordinary slots while any is free,
so the server's ``max_connections`` is the workload's usable limit, plus one slot
per long-lived observer session, plus the reserved slots: the workload can then
open exactly ``max_connections`` sessions while the observer watches.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import ConfigError, DatabaseUnavailable

RESERVED = 3


def _candidates() -> Iterator[Path]:
    env = os.environ.get("FLEETPOOL_PG_BINDIR")
    if env:
        yield Path(env)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            yield Path(out.stdout.strip())
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"):
        for cand in sorted(glob.glob(pattern), reverse=True):
            yield Path(cand)
    # Last: the pgserver wheel (imported only when nothing else was found).
    with contextlib.suppress(ImportError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        yield Path(pgserver.__file__).parent / "pginstall" / "bin"


def find_bindir() -> Path:
    """Return a directory holding ``initdb`` and ``postgres``; ConfigError if none."""
    for p in _candidates():
        if (p / "initdb").is_file() and (p / "postgres").is_file():
            return p
    raise ConfigError(
        "no PostgreSQL server binaries found (looked at $FLEETPOOL_PG_BINDIR, pg_config --bindir, "
        "/usr/lib/postgresql/*/bin and the pgserver wheel); install postgresql or "
        "`pip install fleetpool[demo]`, or pass --dsn"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ConfigError(
        "running as root and neither 'postgres' nor 'nobody' exists to run PostgreSQL"
    )


@dataclass
class EmbeddedPostgres:
    """A throwaway PostgreSQL cluster.

    ``max_connections`` is what the workload role may use; the server is started
    with ``max_connections + observers + reserved`` and
    ``superuser_reserved_connections=reserved``.
    """

    max_connections: int = 10
    reserved: int = RESERVED
    observers: int = 1
    settings: dict[str, str] = field(default_factory=dict)
    user: str = "fleet"
    database: str = "fleet"
    port: int = 0
    basedir: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _owned_dir: bool = field(default=False, init=False, repr=False)

    @property
    def dsn(self) -> str:
        """The workload's DSN (the ordinary role)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def admin_dsn(self) -> str:
        """The observer's DSN (superuser; may use the reserved slots)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def logfile(self) -> Path:
        assert self.basedir is not None
        return self.basedir / "postgres.log"

    def start(self, timeout: float = 30.0) -> EmbeddedPostgres:
        if self.max_connections < 1:
            raise ConfigError(f"max_connections must be >= 1, got {self.max_connections}")
        bindir = find_bindir()
        owner = _run_user()
        if self.basedir is None:
            self.basedir = Path(tempfile.mkdtemp(prefix="fleetpool-pg-"))
            self._owned_dir = True
        data = self.basedir / "data"
        sock = self.basedir / "sock"
        sock.mkdir(exist_ok=True)
        kwargs: dict[str, Any] = {}
        if owner is not None:
            for p in (self.basedir, sock):
                os.chown(p, owner.pw_uid, owner.pw_gid)
            kwargs = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        init = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            capture_output=True,
            env=env,
            cwd=self.basedir,
            timeout=120,
            check=False,
            **kwargs,
        )
        if init.returncode != 0:
            raise DatabaseUnavailable(f"initdb failed: {init.stderr.decode(errors='replace')}")
        self.port = self.port or free_port()
        conf = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(sock),
            "max_connections": str(self.max_connections + self.observers + self.reserved),
            "superuser_reserved_connections": str(self.reserved),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "max_wal_senders": "0",
            "wal_level": "minimal",
            "log_min_messages": "warning",
            **self.settings,
        }
        args = [str(bindir / "postgres"), "-D", str(data)]
        for k, v in conf.items():
            args += ["-c", f"{k}={v}"]
        log = open(self.logfile, "ab")  # noqa: SIM115 - handed to the child
        try:
            self._proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.basedir,
                start_new_session=True,
                **kwargs,
            )
        finally:
            log.close()
        self._wait_ready(timeout)
        self._bootstrap()
        return self

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise DatabaseUnavailable(
                    f"embedded PostgreSQL exited with {self._proc.returncode}: {self._log_tail()}"
                )
            try:
                with psycopg.connect(
                    f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=2
                ):
                    return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.1)
        self.stop()
        raise DatabaseUnavailable(f"embedded PostgreSQL did not start in {timeout}s: {last}")

    def _bootstrap(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(self.user)))
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(self.database), sql.Identifier(self.user)
                )
            )

    def _log_tail(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown: terminate sessions
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._owned_dir and self.basedir is not None:
            shutil.rmtree(self.basedir, ignore_errors=True)
            self.basedir = None
            self._owned_dir = False

    def __enter__(self) -> EmbeddedPostgres:
        return self.start() if self._proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
