"""A container stand-in for the lifecycle tests: one process, a global Database, a handler.

Usage: container.py DSN BUDGET_URL BUDGET_NAME LEASE_TTL [sync|async]

``async`` uses an AsyncDatabase and an async handler, run on one event loop
that lives as long as the container (as an asyncio Lambda adapter keeps it).

Reads one command per line on stdin: ``q`` runs one invocation and prints
``ok <session_id> <lease_id>``; ``exit`` ends. Prints ``ready`` first.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import fleetpool

dsn, budget_url, budget_name, ttl = sys.argv[1:5]
flavour = sys.argv[5] if len(sys.argv) > 5 else "sync"
db = (fleetpool.AsyncDatabase if flavour == "async" else fleetpool.Database)(
    dsn,
    budget=budget_url,
    budget_name=budget_name,
    function="container",
    lease_ttl=float(ttl),
    reap_threshold=None,
)


def sync_handler(event: object, context: object) -> str:
    assert isinstance(db, fleetpool.Database)
    with db.connection() as conn:
        if hasattr(conn, "pgconn"):
            conn.execute("SELECT 1").fetchone()
        else:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        lease = db.lease.id if db.lease is not None else "-"
        return f"ok {db.session_id} {lease}"


async def async_handler(event: object, context: object) -> str:
    assert isinstance(db, fleetpool.AsyncDatabase)
    async with db.connection() as conn:
        if hasattr(conn, "pgconn"):
            await (await conn.execute("SELECT 1")).fetchone()
        else:
            async with conn.cursor() as cur:
                await cur.execute("SELECT 1")
        lease = db.lease.id if db.lease is not None else "-"
        return f"ok {db.session_id} {lease}"


loop = asyncio.new_event_loop()
if flavour == "async":
    wrapped = db.handler(async_handler)  # type: ignore[arg-type]

    def handler(event: Any, context: Any) -> str:
        return str(loop.run_until_complete(wrapped(event, context)))
else:
    handler = db.handler(sync_handler)  # type: ignore[arg-type]


print("ready", flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "exit":
        break
    if command == "q":
        try:
            print(handler({}, None), flush=True)
        except Exception as exc:  # report, keep serving
            print(f"error {type(exc).__name__}: {exc}", flush=True)
