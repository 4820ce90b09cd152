"""One exception tree for all of fleetpool, grouped by what the caller can do.

Strategy: every error a user can meet derives from :class:`FleetpoolError`, and
the second level says what to do about it:

* :class:`ConfigError` -- fix the configuration (also a ``ValueError``);
  :class:`NotConfigured` -- what was named (a budget, a store) is not set up yet.
* :class:`CapacityError` -- the fleet is full: back off, shed load, or raise the limit.
* :class:`LeaseLost` -- your lease expired; acquire a new one.
* :class:`UnavailableError` -- a dependency (budget store, database) is down: retry later.
* :class:`ProtocolError` -- a peer broke the wire protocol (proxy).
* :class:`DataApiError` -- the Data API refused a request; ``code`` names the API's
  error (``BadRequestException``, ``DatabaseErrorException``, ...).

Third-party exceptions are translated at the boundary (``raise X(...) from exc``),
so callers never need to import redis, botocore or sqlite3 to handle ours.
The client additionally raises variants that also subclass the database driver's
``OperationalError`` (see ``fleetpool.client.errors``), so existing ``except``
clauses keep working.
"""

from __future__ import annotations

from typing import Protocol


class FleetpoolError(Exception):
    """Root of every error raised by fleetpool."""

    __module__ = "fleetpool"


class ConfigError(FleetpoolError, ValueError):
    """The configuration (URL, DSN, argument, file) is invalid.

    The message names what was wrong and what is accepted.
    """

    __module__ = "fleetpool"


class NotConfigured(ConfigError):
    """What was named does not exist yet: a budget never configured, a store never created.

    The message says how to create it.
    """

    __module__ = "fleetpool"


class BudgetNotConfigured(NotConfigured):
    """The budget has no limit in its store: nothing can be granted until one is set.

    Raised at once (not after waiting) by ``acquire``, so a fleet pointed at the wrong
    budget name fails on its first call with the name it used.
    """

    __module__ = "fleetpool"

    def __init__(self, budget: str, store: str) -> None:
        from shlex import quote  # only on this error path: not at import

        self.budget = budget
        self.store = store
        super().__init__(
            f"budget {budget!r} is not configured in {store}: give it a limit first, "
            f"e.g. fleetpool budget set {quote(budget)} --store {quote(store)} --limit N "
            f"(or budget.configure(limit=N)); 'fleetpool budget list --store ...' shows "
            f"the budgets the store has"
        )


class CapacityError(FleetpoolError):
    """The fleet's connection capacity is used up."""

    __module__ = "fleetpool"


class NoConnectionsLeft(CapacityError):
    """No lease could be granted within the allowed wait.

    Attributes give the budget, its limit, how many leases were in use and how
    long the caller waited, so the message is actionable from a log line alone.
    """

    __module__ = "fleetpool"

    def __init__(
        self,
        message: str = "",
        *,
        budget: str = "",
        function: str = "",
        limit: int | None = None,
        in_use: int | None = None,
        waited: float = 0.0,
        reason: str = "",
    ) -> None:
        self.budget = budget
        self.function = function
        self.limit = limit
        self.in_use = in_use
        self.waited = waited
        self.reason = reason
        if not message:
            message = (
                f"no connections left in budget {budget!r} for function {function!r}: "
                f"limit={limit}, in_use={in_use}, waited {waited:.3f}s"
                + (f" ({reason})" if reason else "")
            )
        super().__init__(message)


class _LeaseNames(Protocol):
    # What the message names; a structural type keeps errors.py free of imports.
    @property
    def id(self) -> str: ...
    @property
    def function(self) -> str: ...
    @property
    def budget(self) -> str: ...


class LeaseLost(FleetpoolError):
    """The lease expired (or was released) before it was renewed.

    Its capacity may already belong to someone else: acquire a new lease.
    """

    __module__ = "fleetpool"

    @classmethod
    def of(cls, lease: _LeaseNames) -> LeaseLost:
        """The error for ``lease``, as every budget backend words it."""
        return cls(
            f"lease {lease.id} of function {lease.function!r} in budget {lease.budget!r} "
            "expired or was released; acquire a new one"
        )


class UnavailableError(FleetpoolError):
    """A dependency fleetpool talks to is unreachable or failing."""

    __module__ = "fleetpool"


class BudgetUnavailable(UnavailableError):
    """The budget store (Redis, DynamoDB, SQLite file) could not be reached in time."""

    __module__ = "fleetpool"


class DatabaseUnavailable(UnavailableError):
    """The database could not be reached, or refused us, after all retries."""

    __module__ = "fleetpool"


class ServerLoginError(DatabaseUnavailable):
    """A database server refused a login (the proxy's, or a probe's).

    ``code`` is the engine's own (a SQLSTATE such as ``"28P01"``, a MySQL error number
    such as ``"1045"``); ``auth`` says the credentials were refused and ``permanent``
    that retrying will not help (credentials, an unknown database); ``capacity`` that
    the server is full.
    """

    __module__ = "fleetpool"

    def __init__(
        self,
        message: str,
        code: str = "",
        *,
        auth: bool = False,
        capacity: bool = False,
        permanent: bool = False,
        detail: str = "",
        raw: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.code = code
        #: the server's own words, when it gave any
        self.detail = detail
        #: the server's refusal as it arrived on the wire (a client may be given it whole)
        self.raw = raw
        self.auth = auth
        self.capacity = capacity
        self.permanent = permanent or auth


class ProtocolError(FleetpoolError):
    """A wire-protocol rule was broken."""

    __module__ = "fleetpool"


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol does not allow."""

    __module__ = "fleetpool"


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol (malformed, oversized, out of order)."""

    __module__ = "fleetpool"


class DataApiError(FleetpoolError):
    """The Data API (SQL over HTTP) refused or failed a request.

    ``code`` is the RDS Data API error name (``BadRequestException``,
    ``StatementTimeoutException``, ``TransactionNotFoundException`` ...), ``status`` its
    HTTP status; ``sqlstate`` / ``errno`` carry the database's own error code when the
    database raised it, so callers can classify without parsing the message.
    """

    __module__ = "fleetpool"

    def __init__(
        self,
        message: str,
        code: str = "BadRequestException",
        status: int = 400,
        *,
        sqlstate: str | None = None,
        errno: int | None = None,
        connection_id: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.sqlstate = sqlstate
        self.errno = errno
        self.connection_id = connection_id


__all__ = [
    "BudgetNotConfigured",
    "BudgetUnavailable",
    "CapacityError",
    "ConfigError",
    "DataApiError",
    "DatabaseUnavailable",
    "FleetpoolError",
    "LeaseLost",
    "LocalProtocolError",
    "NoConnectionsLeft",
    "NotConfigured",
    "ProtocolError",
    "RemoteProtocolError",
    "ServerLoginError",
    "UnavailableError",
]
