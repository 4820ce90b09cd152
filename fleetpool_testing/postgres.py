"""A throwaway PostgreSQL, with streaming standbys and promotion for failover tests."""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .binaries import pg_bindir, require_binary
from .processes import READY_TIMEOUT, ServerError, chown_tree, run_helper, tail
from .server import Server, copy_template, setting, template

AUTH_METHODS = ("trust", "md5", "scram-sha-256")


class PostgresServer(Server):
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
        max_connections: int | None = 50,
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
        chown_tree(self.socket_dir, self._user)
        if self._primary is not None:
            self._basebackup(self._primary)
        else:
            data = template(("postgres", str(self.bindir)), self._user, self._initdb)
            copy_template(data, self.datadir, self._user)
        method = self.auth
        (self.datadir / "pg_hba.conf").write_text(
            "# written by tests/servers.py\n"
            "local all all trust\n"
            "local replication all trust\n"
            f"host all all 127.0.0.1/32 {method}\n"
            f"host replication all 127.0.0.1/32 {method}\n"
        )
        chown_tree(self.datadir / "pg_hba.conf", self._user)

    def _initdb(self, datadir: Path, log: Path) -> None:
        run_helper(
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
        run_helper(
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
        if self.max_connections is not None:
            # None: from the configuration files (ALTER SYSTEM applies after a restart).
            gucs["max_connections"] = self.max_connections
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
            argv += ["-c", f"{name}={setting(value)}"]
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
                    f"{self!r} still in recovery after promote\n{tail(self.log_path)}"
                )
            time.sleep(0.05)
