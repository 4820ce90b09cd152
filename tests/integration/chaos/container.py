"""A container of the chaos suite: invocations in a loop, each one recorded.

Usage: container.py DSN BUDGET_URL BUDGET_NAME RECORDS_FILE SEED

``BUDGET_URL`` ``-``: no budget (a container behind the proxy, whose pool is
the limit; the proxy keeps the server-side timeouts, so none is sent).

Each invocation inserts one row with a fresh id in a transaction and appends a
JSON line to RECORDS_FILE: the id, whether the commit returned, the time it
took and, on failure, the cause. Between invocations the container sometimes
stops itself (SIGSTOP, as Lambda freezes an idle container); the test thaws it.
Runs until the file ``RECORDS_FILE.stop`` exists or 120 s passed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time

import fleetpool

HOLD = 0.03
IDLE = 0.07
FREEZE_CHANCE = 0.02

dsn, budget_url, budget_name, records, seed = sys.argv[1:6]
rng = random.Random(int(seed))
proxied = budget_url == "-"
db = fleetpool.Database(
    dsn,
    budget=None if proxied else budget_url,
    budget_name=None if proxied else budget_name,
    idle_timeout=None if proxied else "auto",
    function="chaos",
    lease_ttl=5.0,
    max_wait=2.0,
    connect_timeout=2.0,
    statement_timeout=2.0,
    reap_threshold=None,
)


def cause(exc: BaseException) -> str:
    if isinstance(exc, fleetpool.NoConnectionsLeft):
        return "no_connections_left"
    if isinstance(exc, fleetpool.BudgetUnavailable):
        return "budget_unavailable"
    if isinstance(exc, fleetpool.DatabaseUnavailable):
        return "database_unavailable"
    return "database_error:" + type(exc).__name__


# Open for the whole life of the process (line-buffered: a SIGKILL loses no line).
out = open(records, "a", buffering=1)  # noqa: SIM115
stop_file = records + ".stop"
end = time.monotonic() + 120
while time.monotonic() < end and not os.path.exists(stop_file):
    write_id = os.urandom(8).hex()
    start = time.monotonic()
    record: dict[str, object] = {"id": write_id, "committed": False}
    try:
        with db.invocation(), db.transaction() as conn:
            conn.execute(
                "INSERT INTO chaos_writes (id, container) VALUES (%s, %s)", (write_id, seed)
            )
            time.sleep(rng.uniform(0.5, 1.5) * HOLD)
        record["committed"] = True
    except Exception as exc:
        record["cause"] = cause(exc)
    record["seconds"] = time.monotonic() - start
    out.write(json.dumps(record) + "\n")
    time.sleep(rng.uniform(0.5, 1.5) * IDLE)
    if rng.random() < FREEZE_CHANCE:
        os.kill(os.getpid(), signal.SIGSTOP)
db.close()
