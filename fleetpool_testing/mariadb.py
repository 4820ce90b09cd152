"""A throwaway MariaDB (the ``mysql`` engine's server in tests)."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .binaries import first_binary
from .processes import run_helper
from .server import Server, copy_template, setting, template


class MariaDBServer(Server):
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
        self.mariadbd = first_binary("mariadbd", "mysqld")
        self.install_db = first_binary("mariadb-install-db", "mysql_install_db")
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
        data = template(("mariadb", self.mariadbd), self._user, self._install_db)
        copy_template(data, self.datadir, self._user)

    def _install_db(self, datadir: Path, log: Path) -> None:
        run_helper(
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
            *(f"--{k}={setting(v).upper() if isinstance(v, bool) else v}" for k, v in opts.items()),
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
