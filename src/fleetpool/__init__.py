"""fleetpool: every connection a fleet of functions holds is a lease with an owner and an expiry.

Public API::

    import fleetpool
    budget = fleetpool.open_budget("sqlite:///tmp/budget.db", "orders-db")
    db = fleetpool.Database("postgresql://app@db/orders", budget=budget)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    BudgetNotConfigured,
    BudgetUnavailable,
    CapacityError,
    ConfigError,
    DatabaseUnavailable,
    FleetpoolError,
    LeaseLost,
    LocalProtocolError,
    NoConnectionsLeft,
    NotConfigured,
    ProtocolError,
    RemoteProtocolError,
    UnavailableError,
)

if TYPE_CHECKING:
    from .budget import AsyncBudget, Budget, Lease, Snapshot, open_async_budget, open_budget
    from .client.asyncdb import AsyncDatabase
    from .client.database import Database, reap
    from .client.reaper import ReapReport

__version__ = "0.1.0"


_BUDGET_NAMES = ("AsyncBudget", "Budget", "Lease", "Snapshot", "open_async_budget", "open_budget")


def __getattr__(name: str) -> Any:
    # Each part is imported on first use, so `import fleetpool` stays cheap: a
    # function's global section pays only for what it touches (README: Cold start).
    if name in _BUDGET_NAMES:
        from . import budget

        return getattr(budget, name)
    if name in ("Database", "reap"):
        from .client import database

        return getattr(database, name)
    if name == "AsyncDatabase":
        from .client.asyncdb import AsyncDatabase

        return AsyncDatabase
    if name == "ReapReport":
        from .client.reaper import ReapReport

        return ReapReport
    raise AttributeError(f"module 'fleetpool' has no attribute {name!r}")


__all__ = [
    "AsyncBudget",
    "AsyncDatabase",
    "Budget",
    "BudgetNotConfigured",
    "BudgetUnavailable",
    "CapacityError",
    "ConfigError",
    "Database",
    "DatabaseUnavailable",
    "FleetpoolError",
    "Lease",
    "LeaseLost",
    "LocalProtocolError",
    "NoConnectionsLeft",
    "NotConfigured",
    "ProtocolError",
    "ReapReport",
    "RemoteProtocolError",
    "Snapshot",
    "UnavailableError",
    "__version__",
    "open_async_budget",
    "open_budget",
    "reap",
]
