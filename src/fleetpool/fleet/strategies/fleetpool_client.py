"""fleetpool: the fleetpool client -- one warm connection held under a budget lease.

The container opens nothing at init; the first invocation acquires a lease
(waiting up to ``FLEET_MAX_WAIT`` seconds for capacity rather than failing),
connects, and keeps both warm. The lease expires ``FLEET_LEASE_TTL`` seconds
after the last renewal, and the client sets the session's idle timeout to match,
so a frozen or killed container's session and its lease end together.

Under contention a warm connection in a frozen container is capacity nobody
uses, so at the end of an invocation, when other containers are waiting for
the budget, the container closes its connection and returns its lease at once
(``FLEET_YIELD=0`` turns this off).
"""

from __future__ import annotations

import os
from typing import Any

import fleetpool

from ..runtime import note_connect
from ._workload import env_float, session_id, work

DB = fleetpool.Database(
    os.environ["FLEET_DSN"],
    budget=os.environ["FLEET_BUDGET_URL"],
    budget_name=os.environ.get("FLEET_BUDGET_NAME", "fleet"),
    function=os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "fleet"),
    lease_ttl=env_float("FLEET_LEASE_TTL", 3.0),
    max_wait=env_float("FLEET_MAX_WAIT", 10.0),
    connect_timeout=env_float("FLEET_CONNECT_TIMEOUT", 5.0),
)
YIELD = os.environ.get("FLEET_YIELD", "1") not in ("0", "false", "no")
_last_session: int | None = None


def handler(event: Any, context: Any) -> dict[str, Any]:
    global _last_session
    with DB.connection() as conn:
        sid = session_id(conn)
        if sid != _last_session:
            note_connect(sid)
            _last_session = sid
        result = work(conn, event)
    budget = DB.budget
    if YIELD and budget is not None and budget.snapshot().waiting > 0:
        DB.close()
        _last_session = None
        result["yielded"] = True
    return result
