"""counter: the AWS sample's fleet-wide atomic counter, without a TTL -- leak included.

As in the sample: decrement "remaining connections" before connecting (refuse at
once when none remain), connect, run, close, and increment in ``finally``. The
counter lives in a small SQLite file (``FLEET_COUNTER_PATH``) shared by all
containers. A container killed between the decrement and the increment -- an
invocation timeout, a crash -- leaks its slot for good.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from fleetpool.errors import NoConnectionsLeft

from ._counter import read_counter as read_counter
from ._workload import Settings, close_quietly, connect, work

SETTINGS = Settings.from_env()
PATH = os.environ.get("FLEET_COUNTER_PATH", "")
NAME = os.environ.get("FLEET_COUNTER_NAME", "fleet")


def _update(sql: str) -> bool:
    db = sqlite3.connect(PATH, timeout=10, isolation_level=None)
    try:
        return db.execute(sql, (NAME,)).rowcount == 1
    finally:
        db.close()


def decrement() -> bool:
    # SET RemainingConnections = RemainingConnections - 1 IF RemainingConnections > 0
    return _update("UPDATE counter SET remaining = remaining - 1 WHERE name = ? AND remaining > 0")


def increment() -> bool:
    # SET RemainingConnections = RemainingConnections + 1 IF RemainingConnections < Max
    return _update(
        "UPDATE counter SET remaining = remaining + 1 WHERE name = ? AND remaining < max"
    )


def handler(event: Any, context: Any) -> dict[str, Any]:
    if not decrement():
        raise NoConnectionsLeft(
            budget=NAME, function=context.function_name, reason="counter at zero"
        )
    conn = None
    try:
        conn = connect(SETTINGS)
        return work(conn, event)
    finally:
        if conn is not None:
            close_quietly(conn)
        increment()
