"""global: one connection opened in the global section and reused by every invocation.

The common advice ("initialize database connections outside the handler"): cheap
warm invocations, but every container -- frozen or not -- holds a session, and a
reclaimed container's session lingers until the server ends it. Reconnects only
when the connection is known to be closed.
"""

from __future__ import annotations

from typing import Any

from ._workload import Settings, connect, is_closed, work

SETTINGS = Settings.from_env()
CONN = connect(SETTINGS)


def handler(event: Any, context: Any) -> dict[str, Any]:
    global CONN
    if is_closed(CONN):
        CONN = connect(SETTINGS)
    return work(CONN, event)
