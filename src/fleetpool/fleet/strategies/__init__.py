"""Strategy handlers: plain ``(event, context)`` modules, one per way of getting a connection.

Strategy: each module is exactly what a user would deploy -- a global section and
a handler -- so the emulator runs them as it runs any user's handler. The names
users pass (``--strategies``) map to modules here.
"""

from __future__ import annotations

STRATEGIES: dict[str, str] = {
    "naive": "fleetpool.fleet.strategies.naive:handler",
    "global": "fleetpool.fleet.strategies.global_connection:handler",
    "pool": "fleetpool.fleet.strategies.pool:handler",
    "counter": "fleetpool.fleet.strategies.counter:handler",
    "zombie-killer": "fleetpool.fleet.strategies.zombie_killer:handler",
    "fleetpool": "fleetpool.fleet.strategies.fleetpool_client:handler",
    "proxy": "fleetpool.fleet.strategies.proxy_client:handler",
    "data-api": "fleetpool.fleet.strategies.data_api:handler",
}

DESCRIPTIONS: dict[str, str] = {
    "naive": "connect and close in every invocation, no limit",
    "global": "one connection opened in the global section, reused",
    "pool": "a 5-connection pool per container, opened in the global section",
    "counter": "a fleet-wide atomic counter without TTL (the AWS sample)",
    "zombie-killer": "global connection; kills idle sessions when usage > 80% "
    "(serverless-mysql / serverless-pg)",
    "fleetpool": "fleetpool client: warm connection held under a budget lease with TTL",
    "proxy": "global connection through fleetpool's proxy (transaction pooling, pool = limit)",
    "data-api": "no database connection: SQL over HTTP to fleetpool's Data API (pool = limit)",
}

#: Strategies that need a PostgreSQL server; on MySQL/MariaDB they are skipped.
#: (None today: the proxy speaks both protocols.)
POSTGRES_ONLY: frozenset[str] = frozenset()

__all__ = ["DESCRIPTIONS", "POSTGRES_ONLY", "STRATEGIES"]
