"""proxy: one connection opened lazily in the global section, to fleetpool's pooling proxy.

What a user deploys behind a transaction-pooling proxy (RDS Proxy, PgBouncer,
``fleetpool proxy``): the function keeps the same "global connection" habit, but
its connection goes to the proxy, which multiplexes every container's client
connection over at most ``pool_size`` server sessions. A frozen or killed
container then holds only a client socket at the proxy, never a server session.
Reconnects when the connection is known to be closed (e.g. the proxy dropped it).

``FLEET_PROXY_DSN`` is the proxy's address (``postgresql://`` or ``mysql://``, as the
database's) and ``FLEET_PROXY_APP_NAME`` the application name the proxy's own
PostgreSQL server sessions use (both set by the emulator).
"""

from __future__ import annotations

import os
from typing import Any

from ..runtime import note_connect
from ._workload import engine_of, env_float, is_closed, mysql_params, work

DSN = os.environ["FLEET_PROXY_DSN"]
# The proxy re-applies a client's application_name on whichever server session
# it lands on and, in transaction mode, leaves it there: per-container names
# would make pooled sessions look owned by (later frozen) containers, so every
# container uses the name the pool's sessions already have.
APP_NAME = os.environ.get("FLEET_PROXY_APP_NAME", "fleet-proxy")
CONNECT_TIMEOUT = max(1, round(env_float("FLEET_CONNECT_TIMEOUT", 5.0)))
CONN: Any = None


def connect() -> Any:
    conn: Any
    if engine_of(DSN) == "postgresql":
        import psycopg

        conn = psycopg.connect(
            DSN, autocommit=True, connect_timeout=CONNECT_TIMEOUT, application_name=APP_NAME
        )
    else:
        import pymysql

        conn = pymysql.connect(connect_timeout=CONNECT_TIMEOUT, **mysql_params(DSN))
    # The backend pid (MySQL: thread id) the proxy reports is its own client id, not a server
    # session: announcing it would let the observer and the cleanup mistake it
    # for a real pid.
    note_connect()
    return conn


def handler(event: Any, context: Any) -> dict[str, Any]:
    global CONN
    if CONN is None or is_closed(CONN):
        CONN = connect()
    return work(CONN, event)
