"""A container stand-in for the lifecycle tests: one process, a global Database, a handler.

Usage: container.py DSN BUDGET_URL BUDGET_NAME LEASE_TTL

Reads one command per line on stdin: ``q`` runs one invocation and prints
``ok <session_id> <lease_id>``; ``exit`` ends. Prints ``ready`` first.
"""

from __future__ import annotations

import sys

import fleetpool

dsn, budget_url, budget_name, ttl = sys.argv[1:5]
db = fleetpool.Database(
    dsn,
    budget=budget_url,
    budget_name=budget_name,
    function="container",
    lease_ttl=float(ttl),
    reap_threshold=None,
)


@db.handler
def handler(event: object, context: object) -> str:
    with db.connection() as conn:
        if hasattr(conn, "pgconn"):
            conn.execute("SELECT 1").fetchone()
        else:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        lease = db.lease.id if db.lease is not None else "-"
        return f"ok {db.session_id} {lease}"


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
