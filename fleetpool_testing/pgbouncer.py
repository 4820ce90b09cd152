"""A throwaway PgBouncer in front of a PostgreSQL server, from a pgbouncer.ini text.

Strategy: the caller writes the ini as a PgBouncer user would (``[databases]``,
``[pgbouncer]``, an ``auth_file``); this adds only what a private instance needs --
its loopback address and free port, no Unix socket, a log and pid file in its own
folder -- so the same text can be fed to ``fleetpool proxy --pgbouncer-ini``.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Mapping

from .binaries import require_binary
from .processes import chown_tree
from .server import Server


class PgBouncerServer(Server):
    """PgBouncer with ``ini`` (its ``[pgbouncer]`` section is completed here) and the
    files of ``files`` (name -> text) written beside it (``auth_file = users.txt``)."""

    kind = "pgbouncer"
    stop_signal = signal.SIGINT  # PgBouncer's immediate shutdown
    run_as = "postgres"  # PgBouncer refuses to run as root

    def __init__(self, ini: str, files: Mapping[str, str] | None = None) -> None:
        self.binary = require_binary("pgbouncer")
        super().__init__()
        self.ini_text = ini
        self.files = dict(files or {})

    @property
    def ini_path(self) -> str:
        return str(self.tmpdir / "pgbouncer.ini")

    def _prepare(self) -> None:
        for name, text in self.files.items():
            (self.tmpdir / name).write_text(text)
        chown_tree(self.tmpdir, self._user)

    def _argv(self) -> list[str]:
        # Written at each start: a start that lost a race for its port picks another.
        own = (
            f"listen_addr = {self.host}\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"logfile = {self.log_path}\npidfile = {self.tmpdir / 'pgbouncer.pid'}\n"
        )
        text = self.ini_text.replace("[pgbouncer]\n", "[pgbouncer]\n" + own, 1)
        (self.tmpdir / "pgbouncer.ini").write_text(text)
        chown_tree(self.tmpdir / "pgbouncer.ini", self._user)
        return [self.binary, self.ini_path]

    def _probe(self) -> None:
        socket.create_connection((self.host, self.port), timeout=1).close()
