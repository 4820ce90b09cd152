"""naive: open a connection in every invocation and close it at the end; no limit.

Every concurrent invocation holds its own server session, so a spike beyond
``max_connections`` is refused by the server; a container killed mid-invocation
leaves its session behind.
"""

from __future__ import annotations

from typing import Any

from ._workload import Settings, close_quietly, connect, work

SETTINGS = Settings.from_env()


def handler(event: Any, context: Any) -> dict[str, Any]:
    conn = connect(SETTINGS)
    try:
        return work(conn, event)
    finally:
        close_quietly(conn)
