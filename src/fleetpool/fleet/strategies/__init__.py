"""The strategy registry: one :class:`Strategy` record per way of getting a connection.

Strategy: each handler module is exactly what a user would deploy -- a global
section and a handler -- so the emulator runs them as it runs any user's handler.
Everything else the fleet knows about a strategy (its description, the engines
it can run against, what the run must start for it) is data in one record here,
so a new strategy touches this file and its handler module. ``setup`` names a
function in :mod:`fleetpool.fleet.setups` (by name, so containers importing a
handler never import the run's machinery).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...client.dsn import Engine

#: Every engine the fleet runs against (the client's names, see :mod:`fleetpool.client.dsn`).
ALL_ENGINES: frozenset[Engine] = frozenset({"postgresql", "mysql"})


@dataclass(frozen=True)
class Strategy:
    """One strategy: what the emulator runs and what the run must provide for it."""

    name: str
    #: ``module:function`` the containers import.
    handler: str
    description: str
    #: Engines the strategy can run against; on others it is skipped with ``skip_reason``.
    engines: frozenset[Engine] = ALL_ENGINES
    skip_reason: str = ""
    #: Name of the function in :mod:`fleetpool.fleet.setups` preparing the run; "" for none.
    setup: str = ""


def _h(module: str) -> str:
    return f"fleetpool.fleet.strategies.{module}:handler"


REGISTRY: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("naive", _h("naive"), "connect and close in every invocation, no limit"),
        Strategy(
            "global",
            _h("global_connection"),
            "one connection opened in the global section, reused",
        ),
        Strategy(
            "pool", _h("pool"), "a 5-connection pool per container, opened in the global section"
        ),
        Strategy(
            "counter",
            _h("counter"),
            "a fleet-wide atomic counter without TTL (the AWS sample)",
            setup="counter",
        ),
        Strategy(
            "zombie-killer",
            _h("zombie_killer"),
            "global connection; kills idle sessions when usage > 80% "
            "(serverless-mysql / serverless-pg)",
        ),
        Strategy(
            "fleetpool",
            _h("fleetpool_client"),
            "fleetpool client: warm connection held under a budget lease with TTL",
            setup="budget",
        ),
        Strategy(
            "proxy",
            _h("proxy_client"),
            "global connection through fleetpool's proxy (transaction pooling, pool = limit)",
            setup="proxy",
        ),
        Strategy(
            "data-api",
            _h("data_api"),
            "no database connection: SQL over HTTP to fleetpool's Data API (pool = limit)",
            setup="data_api",
        ),
    )
}

# Views for callers that need one column (names in registry order).
STRATEGIES: dict[str, str] = {n: s.handler for n, s in REGISTRY.items()}
DESCRIPTIONS: dict[str, str] = {n: s.description for n, s in REGISTRY.items()}

__all__ = ["ALL_ENGINES", "DESCRIPTIONS", "REGISTRY", "STRATEGIES", "Strategy"]
