"""data-api: no database connection at all; each statement is an HTTP request.

What a user deploys against fleetpool's Data API (or AWS's RDS Data API): the
function keeps one keep-alive HTTP connection (``fleetpool.http``, standard library
only) and the endpoint owns the database pool. A frozen or killed container holds a
socket to the endpoint at most, never a server session.

``FLEET_DATA_API_URL``, ``FLEET_DATA_API_KEY`` and ``FLEET_DATA_API_SECRET`` are set by
the emulator, which starts the endpoint with a pool of the fleet's limit.
"""

from __future__ import annotations

import os
from typing import Any

from ._workload import work

DB: Any = None


def handler(event: Any, context: Any) -> dict[str, Any]:
    global DB
    if DB is None:
        import fleetpool.http

        DB = fleetpool.http.connect(
            os.environ["FLEET_DATA_API_URL"],
            access_key=os.environ["FLEET_DATA_API_KEY"],
            secret_key=os.environ["FLEET_DATA_API_SECRET"],
            # A frozen container's socket is stale when it thaws: reconnect first.
            idle_reconnect=float(os.environ.get("FLEET_DATA_API_IDLE", "20")),
        )
    return work(DB, event)
