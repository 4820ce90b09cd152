"""Handlers for the container-model tests (imported inside container processes)."""

from __future__ import annotations

import os
import time
from typing import Any

from fleetpool.fleet.runtime import note_connect

# The global section: runs once per container.
with open(os.environ["FLEET_TEST_INIT_FILE"], "a") as f:
    f.write(f"{os.getpid()}\n")

CALLS = 0
CONN: Any = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global CALLS
    CALLS += 1
    t0 = time.time()
    time.sleep(float(event.get("think", 0.0)))
    return {
        "pid": os.getpid(),
        "calls": CALLS,
        "t0": t0,
        "t1": time.time(),
        "remaining_ms": context.get_remaining_time_in_millis(),
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
    }


def connect_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global CONN
    import psycopg

    if CONN is None:
        CONN = psycopg.connect(
            os.environ["FLEET_DSN"], autocommit=True, application_name=os.environ["FLEET_APP_NAME"]
        )
        note_connect(CONN.info.backend_pid)
    CONN.execute("SELECT 1")
    time.sleep(float(event.get("think", 0.0)))
    return {"pid": os.getpid(), "backend": CONN.info.backend_pid}


def shutdown() -> None:
    with open(os.environ["FLEET_TEST_INIT_FILE"] + ".shutdown", "a") as f:
        f.write(f"{os.getpid()}\n")
