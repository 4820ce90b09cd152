"""The fleet-wide connection budget: leases with an owner and an expiry.

Open one by URL::

    budget = open_budget("redis://cache:6379/0", "orders-db")
    budget.configure(limit=80, functions={"api": (10, 60), "reports": (0, 10)})
    lease = budget.acquire(function="api", ttl=30, wait=2)
    ...
    budget.release(lease)

Accepted URLs (``ConfigError`` names them when another is given):

* ``memory://`` -- this process only (tests, simulator, a single proxy).
* ``sqlite:///abs/path/budget.db`` or ``sqlite:relative/path.db`` -- processes on one host.
* ``redis://host:port/db`` and ``rediss://`` (TLS) -- a fleet; one Lua script per call.
* ``redis+cluster://host:port[,host:port...]`` -- a Redis Cluster (the budget's keys
  share one slot; redirects are followed).
* ``redis+sentinel://host:port[,host:port...]/service/db`` -- Sentinel's current primary.
* Redis options ``wait_replicas=N`` (and ``wait_timeout`` seconds): a grant or renewal
  returns only once N replicas have it (WAIT), so a failover cannot lose it.
* ``dynamodb://table?region=eu-west-1&endpoint_url=http://...`` -- a fleet on AWS.

Query parameters common to all: ``timeout`` (seconds per store call, default 2)
and ``on_unavailable`` (``fail_open`` or ``fail_closed``).
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..errors import ConfigError
from ..holder import default_holder
from ..redact import redact_url
from ._base import AcquireRequest, AcquireResult, BudgetBackend, Lease, Snapshot
from ._budget import AsyncBudget, Budget, OnUnavailable
from ._policy import UNCONFIGURED, BudgetConfig, Decision, FunctionLimits, admit, validate_config

REDIS_SCHEMES = (
    "redis",
    "rediss",
    "redis+cluster",
    "rediss+cluster",
    "redis+sentinel",
    "rediss+sentinel",
)
SCHEMES = ("memory", "sqlite", *REDIS_SCHEMES, "dynamodb")
ACCEPTED = (
    "memory://, sqlite:///path/to/file.db, redis://host:port/db, rediss://host:port/db, "
    "redis+cluster://host:port[,host:port], redis+sentinel://host:port[,host:port]/service/db, "
    "dynamodb://table?region=...&endpoint_url=..."
)
DEFAULT_TIMEOUT = 2.0


def _options(url: str) -> tuple[Any, dict[str, str]]:
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"budget URL must be a non-empty string; accepted: {ACCEPTED}")
    try:
        parts = urlsplit(url.strip())
        if "," not in parts.netloc:  # several hosts (Cluster, Sentinel) are checked later
            _ = parts.port  # raises ValueError for a malformed port
    except ValueError as exc:
        raise ConfigError(
            f"malformed budget URL {redact_url(url)!r}: {exc}; accepted: {ACCEPTED}"
        ) from exc
    if parts.scheme not in SCHEMES:
        shown = parts.scheme or "(none)"
        raise ConfigError(
            f"unknown budget store scheme {shown!r} in {redact_url(url)!r}; accepted: {ACCEPTED}"
        )
    return parts, dict(parse_qsl(parts.query, keep_blank_values=True))


def _timeout(opts: dict[str, str], url: str) -> float:
    raw = opts.pop("timeout", None)
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(
            f"timeout in {redact_url(url)!r} must be a positive number of seconds, got {raw!r}"
        )
    return value


def store_display(url: str) -> str:
    """The store's URL as messages show it: no password, no query options."""
    base = url.strip().split("?", 1)[0].split("#", 1)[0]
    netloc = urlsplit(base).netloc
    if "@" in netloc:  # credentials: redis://user:password@host
        base = base.replace(netloc, netloc.rpartition("@")[2], 1)
    return base


def open_backend(
    url: str, name: str, *, timeout: float | None = None, create: bool = True
) -> BudgetBackend:
    """Build the backend named by ``url`` for the budget ``name`` (no I/O yet where possible).

    ``create=False`` opens a store only if it exists, and never writes to make it (a
    missing SQLite file or DynamoDB table is :class:`fleetpool.NotConfigured`).
    """
    backend = _backend(url, name, timeout, create)
    backend.store = store_display(url)
    return backend


def _backend(url: str, name: str, timeout: float | None, create: bool) -> BudgetBackend:
    if not isinstance(name, str) or not name or len(name) > 200:
        raise ConfigError(
            f"budget name must be a non-empty string of at most 200 chars, got {name!r}"
        )
    parts, opts = _options(url)
    opts.pop("on_unavailable", None)
    t = timeout if timeout is not None else _timeout(opts, url)
    opts.pop("timeout", None)
    scheme = parts.scheme
    if scheme == "memory":
        from .memory import MemoryBackend

        return MemoryBackend(name)
    if scheme == "sqlite":
        path = parts.path if parts.netloc == "" else None
        if not path:
            raise ConfigError(
                f"sqlite budget URL {redact_url(url)!r} needs a file path: sqlite:///abs/path.db "
                "or sqlite:relative/path.db"
            )
        from .sqlite import SQLiteBackend

        return SQLiteBackend(name, path, timeout=t, create=create)
    if scheme in REDIS_SCHEMES:
        if not parts.netloc.rpartition("@")[2]:
            raise ConfigError(
                f"redis budget URL {redact_url(url)!r} needs a host: redis://host:6379/0"
            )
        from .redis import RedisBackend

        return RedisBackend(name, url.split("?", 1)[0], timeout=t, options=opts)
    # dynamodb
    table = parts.netloc or parts.path.lstrip("/")
    if not table:
        raise ConfigError(
            f"dynamodb budget URL {redact_url(url)!r} needs a table: "
            "dynamodb://table?region=eu-west-1"
        )
    from .dynamodb import DynamoDBBackend

    return DynamoDBBackend(
        name,
        table,
        region=opts.pop("region", None),
        endpoint_url=opts.pop("endpoint_url", None),
        timeout=t,
        create_table=create and opts.pop("create", "true").lower() not in ("0", "false", "no"),
    )


def _on_unavailable(url: str, value: str | None) -> OnUnavailable:
    _, opts = _options(url)
    chosen = value or opts.get("on_unavailable") or "fail_open"
    if chosen not in ("fail_open", "fail_closed"):
        raise ConfigError(f"on_unavailable must be 'fail_open' or 'fail_closed', got {chosen!r}")
    return chosen  # type: ignore[return-value]


def open_budget(
    url: str,
    name: str,
    *,
    on_unavailable: OnUnavailable | None = None,
    timeout: float | None = None,
    create: bool = True,
) -> Budget:
    """Open the budget ``name`` in the store at ``url``.

    Raises :class:`fleetpool.ConfigError` for an unknown scheme or a malformed
    URL, naming the accepted forms. ``create=False`` is for readers: the store
    must exist already (:class:`fleetpool.NotConfigured` otherwise).
    """
    mode = _on_unavailable(url, on_unavailable)
    return Budget(open_backend(url, name, timeout=timeout, create=create), on_unavailable=mode)


def list_budgets(url: str, *, timeout: float | None = None) -> list[str]:
    """Names of the budgets configured in the store at ``url``, sorted (reads only)."""
    backend = open_backend(url, "-", timeout=timeout, create=False)
    try:
        return backend.budget_names()
    finally:
        backend.close()


def open_async_budget(
    url: str,
    name: str,
    *,
    on_unavailable: OnUnavailable | None = None,
    timeout: float | None = None,
) -> AsyncBudget:
    """Like :func:`open_budget`, with ``async`` methods."""
    return AsyncBudget(open_budget(url, name, on_unavailable=on_unavailable, timeout=timeout))


__all__ = [
    "ACCEPTED",
    "UNCONFIGURED",
    "AcquireRequest",
    "AcquireResult",
    "AsyncBudget",
    "Budget",
    "BudgetBackend",
    "BudgetConfig",
    "Decision",
    "FunctionLimits",
    "Lease",
    "Snapshot",
    "admit",
    "default_holder",
    "list_budgets",
    "open_async_budget",
    "open_backend",
    "open_budget",
    "store_display",
    "validate_config",
]
