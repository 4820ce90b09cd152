"""Throwaway PostgreSQL, MariaDB, Redis and moto servers for tests and benchmarks.

Modules: ``binaries`` (finding them), ``processes`` (privilege drop, reaping, ports),
``server`` (the shared lifecycle), ``postgres``, ``mariadb``, ``redis``, ``moto``,
``pgbouncer``, ``prometheus``, ``sysbench`` (running the load tool, not a server).
The pytest fixtures over them are in ``tests/fix_servers.py``.

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

from .binaries import DEBIAN_PACKAGES, MissingBinary, pg_bindir, require_binary
from .mariadb import MariaDBServer
from .moto import MotoServer
from .pgbouncer import PgBouncerServer
from .postgres import AUTH_METHODS, PostgresServer
from .processes import HOST, ServerError, free_port
from .prometheus import PrometheusServer
from .redis import RedisServer
from .server import Server

__all__ = [
    "AUTH_METHODS",
    "DEBIAN_PACKAGES",
    "HOST",
    "MariaDBServer",
    "MissingBinary",
    "MotoServer",
    "PgBouncerServer",
    "PostgresServer",
    "PrometheusServer",
    "RedisServer",
    "Server",
    "ServerError",
    "free_port",
    "pg_bindir",
    "require_binary",
]
