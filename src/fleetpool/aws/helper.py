"""A drop-in for the AWS sample's connection-counting helper function, backed by leases.

Strategy: the sample keeps one counter per database in DynamoDB; a function
invokes the helper with ``incrementCounter: true`` before it opens a connection
and ``false`` after it closes it. A caller that crashes, times out or is frozen
between the two calls leaks its slot for good. Here each "increment" is a lease
of a fleetpool budget named after the database, with a TTL: a slot nobody gives
back returns by itself when the TTL runs out. The sample's event and answer
shapes are kept exactly, so its callers switch by changing the function they
invoke; a richer shape names the lease, so a caller can give back its own.

Deploy it with the Lambda layer (``Handler: fleetpool.aws.helper.handler``) and:

* ``FLEETPOOL_BUDGET_URL`` (required): the budget store, e.g.
  ``dynamodb://fleetpool-budgets?create=false``; each database name is a budget,
  configured once with ``fleetpool budget set NAME --store URL --limit N``;
* ``FLEETPOOL_LEASE_TTL``: seconds a slot lasts without a release (default 120);
  keep it above the callers' timeout;
* ``FLEETPOOL_HELPER_WAIT``: seconds an acquire may wait for a slot (default 0:
  answer at once, as the sample does);
* ``FLEETPOOL_HELPER_NAMESPACE``: namespace of the sample's two metrics
  (default ``RDSLambda``).

Events and answers::

    {"incrementCounter": true, "RDBMSName": "MySQL"}   -> true | false
    {"incrementCounter": false, "RDBMSName": "MySQL"}  -> true | false

The first takes a slot (``false``: none left); the second gives back the oldest
slot taken through this helper for that database (``false``: none was held).
``incrementCounter`` may also be the strings ``"True"``/``"False"``, as the
sample's callers send them. fleetpool's own shape::

    {"action": "acquire", "database": "orders-db", "function": "api",
     "holder": "container-7", "ttl": 60, "wait": 1}
        -> {"granted": true, "lease": "<id>", "expires_at": 1718000000.0,
            "remaining": 3}
         | {"granted": false, "reason": "at_limit", "remaining": 0}
    {"action": "renew", "database": "orders-db", "lease": "<id>", "ttl": 60}
        -> {"renewed": true, "expires_at": ...} | {"renewed": false}
    {"action": "release", "database": "orders-db", "lease": "<id>"}
        -> {"released": true, "remaining": 4} | {"released": false, ...}

(``function``, ``holder``, ``ttl`` and ``wait`` are optional; ``release``
without ``lease`` behaves like the sample's.) A malformed event raises
:class:`fleetpool.ConfigError` saying which shapes are accepted.

Metrics, as EMF on stdout (no CloudWatch API call, no extra permission): the
sample's ``Remaining Connections`` and ``No Connections Left Error`` with
dimension ``DBName`` in ``RDSLambda``, after every call; and fleetpool's own
budget metrics in its namespace (:mod:`fleetpool.aws.emf`).
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from ..budget import Budget, Lease, open_budget
from ..cloudwatch import emf_record
from ..errors import ConfigError, LeaseLost, NoConnectionsLeft
from .emf import InvocationMetrics

#: The sample's names, as its README states them, and its namespace.
REMAINING = "Remaining Connections"
NO_CONNECTIONS_LEFT = "No Connections Left Error"
SAMPLE_NAMESPACE = "RDSLambda"
#: Holders of leases taken through the helper start with this, so an anonymous
#: release never gives back a lease a fleetpool.Database client holds.
HOLDER_PREFIX = "helper:"
#: An anonymous release that loses a race tries the next-oldest lease, this many times.
RELEASE_TRIES = 5

SHAPES = (
    "expected the sample's {'incrementCounter': true|false, 'RDBMSName': '<database>'} "
    "or {'action': 'acquire'|'renew'|'release', 'database': '<database>', ...}"
)


def _env_seconds(name: str, default: float, *, allow_zero: bool) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(
            f"{name} must be a number of seconds {'>= 0' if allow_zero else '> 0'}, got {raw!r}"
        )
    return value


class Helper:
    """The helper's state for one container: budgets opened once, settings read once."""

    def __init__(
        self,
        store: str,
        *,
        ttl: float = 120.0,
        wait: float = 0.0,
        namespace: str = SAMPLE_NAMESPACE,
        metrics: InvocationMetrics | None = None,
    ) -> None:
        if not store:
            raise ConfigError(
                "the helper needs FLEETPOOL_BUDGET_URL, e.g. dynamodb://fleetpool-budgets?create=false"
            )
        self.store = store
        self.ttl = ttl
        self.wait = wait
        self.namespace = namespace
        self.metrics = metrics or InvocationMetrics(os.environ.get("FLEETPOOL_METRICS", "auto"))
        self._budgets: dict[str, Budget] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> Helper:
        return cls(
            os.environ.get("FLEETPOOL_BUDGET_URL", ""),
            ttl=_env_seconds("FLEETPOOL_LEASE_TTL", 120.0, allow_zero=False),
            wait=_env_seconds("FLEETPOOL_HELPER_WAIT", 0.0, allow_zero=True),
            namespace=os.environ.get("FLEETPOOL_HELPER_NAMESPACE") or SAMPLE_NAMESPACE,
        )

    def budget(self, database: str) -> Budget:
        with self._lock:
            budget = self._budgets.get(database)
            if budget is None:
                budget = self._budgets[database] = open_budget(self.store, database)
            return budget

    # -- the calls ---------------------------------------------------------------------

    def __call__(self, event: Any, context: Any = None) -> Any:
        if not isinstance(event, Mapping):
            raise ConfigError(f"helper event must be a JSON object; {SHAPES}; got {event!r}")
        if "incrementCounter" in event:
            database = _name(event, "RDBMSName")
            take = _flag(event["incrementCounter"])
            holder = _holder(None, context)
            if take:
                answer = self.acquire(database, "helper", holder, self.ttl, self.wait, context)
                return bool(answer["granted"])
            return bool(self.release(database, None, context)["released"])
        action = event.get("action")
        database = _name(event, "database")
        function = event.get("function") or "helper"
        if not isinstance(function, str):
            raise ConfigError(f"'function' must be a string; got {function!r}")
        if action == "acquire":
            return self.acquire(
                database,
                function,
                _holder(event.get("holder"), context),
                _seconds(event, "ttl", self.ttl, allow_zero=False),
                _seconds(event, "wait", self.wait, allow_zero=True),
                context,
            )
        if action == "renew":
            lease_id = _lease_id(event, required=True)
            assert lease_id is not None  # required=True raised otherwise
            return self.renew(
                database,
                lease_id,
                _seconds(event, "ttl", self.ttl, allow_zero=False),
            )
        if action == "release":
            return self.release(database, _lease_id(event, required=False), context)
        raise ConfigError(f"unknown helper action {action!r}; {SHAPES}")

    def acquire(
        self, database: str, function: str, holder: str, ttl: float, wait: float, context: Any
    ) -> dict[str, Any]:
        budget = self.budget(database)
        try:
            lease = budget.acquire(function=function, holder=holder, ttl=ttl, wait=wait)
        except NoConnectionsLeft as exc:
            self._publish(database, budget, refused=True, context=context)
            return {"granted": False, "reason": exc.reason, "remaining": budget.metrics.remaining}
        self._publish(database, budget, refused=False, context=context)
        return {
            "granted": True,
            "lease": lease.id,
            "expires_at": lease.expires_at,
            "remaining": budget.metrics.remaining,
        }

    def renew(self, database: str, lease_id: str, ttl: float) -> dict[str, Any]:
        budget = self.budget(database)
        lease = _find(budget.leases(), lease_id)
        if lease is None:
            return {"renewed": False}
        try:
            renewed = budget.renew(lease, ttl)
        except LeaseLost:
            return {"renewed": False}
        return {"renewed": True, "expires_at": renewed.expires_at}

    def release(self, database: str, lease_id: str | None, context: Any) -> dict[str, Any]:
        budget = self.budget(database)
        released = False
        leases = budget.leases()
        if lease_id is not None:
            lease = _find(leases, lease_id)
            released = lease is not None and budget.release(lease)
        else:
            # The sample's release names no caller: give back the oldest slot taken
            # through the helper. Slots are interchangeable, and a crashed caller's
            # slot left unreleased is the one that expires on its own.
            mine = sorted(
                (x for x in leases if x.holder.startswith(HOLDER_PREFIX)),
                key=lambda x: x.acquired_at,
            )
            for lease in mine[:RELEASE_TRIES]:
                if budget.release(lease):  # False: a concurrent release took it first
                    released = True
                    break
        budget.snapshot()  # the true remaining capacity for the metric, after the release
        self._publish(database, budget, refused=False, context=context)
        return {"released": released, "remaining": budget.metrics.remaining}

    def _publish(self, database: str, budget: Budget, *, refused: bool, context: Any) -> None:
        values: dict[str, Any] = {}
        if budget.metrics.remaining is not None:  # unknown (store unreachable): left out
            values[REMAINING] = budget.metrics.remaining
        values[NO_CONNECTIONS_LEFT] = 1 if refused else 0
        sample = emf_record(self.namespace, int(time.time() * 1000), {"DBName": database}, values)
        self.metrics.write([sample], context)
        self.metrics.flush(budget.metrics, context)


def _name(event: Mapping[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ConfigError(
            f"helper event needs {key!r}: a database name (1-200 characters); {SHAPES}"
        )
    return value


def _flag(value: Any) -> bool:
    # The sample compares str(event['incrementCounter']) == "True"; accept what JSON gives too.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(f"'incrementCounter' must be true or false; got {value!r}")


def _holder(given: Any, context: Any) -> str:
    if given is not None and not isinstance(given, str):
        raise ConfigError(f"'holder' must be a string; got {given!r}")
    who = given or getattr(context, "aws_request_id", None) or uuid.uuid4().hex
    return f"{HOLDER_PREFIX}{who}"


def _seconds(event: Mapping[str, Any], key: str, default: float, *, allow_zero: bool) -> float:
    value = event.get(key, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key!r} must be a number of seconds {bound}; got {value!r}")
    return float(value)


def _lease_id(event: Mapping[str, Any], *, required: bool) -> str | None:
    value = event.get("lease")
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"'lease' must be the id an acquire answered; got {value!r}")
    return value


def _find(leases: list[Lease], lease_id: str) -> Lease | None:
    return next((x for x in leases if x.id == lease_id), None)


_helper: Helper | None = None
_helper_lock = threading.Lock()


def handler(event: Any, context: Any) -> Any:
    """The Lambda entry point: ``Handler: fleetpool.aws.helper.handler``."""
    global _helper
    if _helper is None:
        with _helper_lock:
            if _helper is None:
                _helper = Helper.from_environment()
    return _helper(event, context)
