"""``Database``: one warm, leased, clean connection per container.

Strategy: a serverless container runs one invocation at a time, so the right
pool size is one. ``Database`` is built in the global section with no I/O and
connects lazily at the first ``connection()``. Each invocation then does:

* checkout -- the pure :func:`~fleetpool.client.decisions.plan_checkout` says
  whether the lease needs work (acquire when none or expired, renew when less
  than half its TTL remains, otherwise nothing); the warm connection is checked
  with a zero-timeout poll of its socket (no round trip) and replaced if the
  server dropped it. A warm, clean checkout therefore costs no store call and
  no database round trip.
* the user's statements, on the driver's own connection object.
* check-in -- :func:`~fleetpool.client.decisions.plan_checkin` reads what the
  driver saw (transaction status, statements that leave session state,
  server-reported parameters) and chooses nothing, ROLLBACK, a full reset, or
  closing. A clean invocation pays nothing.

Connect errors are classified by SQLSTATE / error number: "too many
connections" is retried within ``max_wait`` (the capacity deadline, shared with
the lease wait), network errors within ``connect_timeout``, an authentication
failure once after refreshing the credentials. A statement is never re-run:
if the connection dies under a statement, the driver's error reaches the
caller and the next checkout reconnects.

The dirty-session detection is a heuristic over statement text plus what the
server reports for free; state created where the client cannot see it (inside a
function body, e.g. a temp table) is not detected. For such code pass
``reset="always"`` (one reset round trip per invocation) or call
:meth:`Database.mark_dirty`.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .._check import seconds
from ..aws.emf import InvocationMetrics, MetricsMode
from ..backoff import Backoff, EqualJitterBackoff
from ..engines import ErrorKind, SessionState
from ..errors import (
    BudgetNotConfigured,
    ConfigError,
    DatabaseUnavailable,
    FleetpoolError,
    LeaseLost,
    NoConnectionsLeft,
)
from ..holder import default_holder
from . import shutdown
from .credentials import Credentials, PasswordSource
from .decisions import (
    CheckinPlan,
    ConnectRetry,
    SessionReport,
    plan_checkin,
    plan_checkout,
    plan_connect_attempt,
    server_idle_timeout,
)
from .dsn import Target, budget_key, default_budget_name, parse_dsn
from .errors import make_error

if TYPE_CHECKING:
    from ..budget import Budget, Lease
    from ._driver import Driver, DriverBase
    from .reaper import ReapReport

# The budget package, the reaper and TLS are imported where first needed, not
# here: a function's global section builds a Database (no I/O) and should pay
# only for what construction uses (the cold-start figure in the README).

log = logging.getLogger("fleetpool.client")

Mode = Literal["reuse", "per_invocation"]
R = TypeVar("R")

#: Upper bound on connect attempts, whatever the deadlines say.
MAX_ATTEMPTS = 200
#: Seconds a handed-off connection's close waits for the server to end the session.
HANDOFF_CLOSE_WAIT = 0.5
#: Forked children must never close (and so terminate) the parent's session.
_ORPHANS: list[Any] = []


class Stats:
    """Counters since the Database was created (tests, benchmarks, logs).

    Each counter starts at the class's 0 and becomes the instance's at its first
    increment (a plain class: a dataclass would cost the cold start ~1 ms).
    """

    checkouts: int = 0
    connects: int = 0
    reconnects: int = 0
    connect_retries: int = 0
    rollbacks: int = 0
    resets: int = 0
    closes: int = 0
    acquires: int = 0
    renewals: int = 0
    releases: int = 0
    reaps: int = 0
    #: Leases given to waiters at check-in (fair handoff).
    handoffs: int = 0
    #: Logins that waited for a slot of the fleet's connect rate (storm control).
    connect_waits: int = 0
    #: Live-limit changes this container wrote to the budget.
    limit_changes: int = 0

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}={getattr(self, name)}" for name in Stats.__annotations__)
        return f"Stats({counts})"


class ConnectAttempts:
    """The retry state of one connect; each failure is decided by ``plan_connect_attempt``."""

    def __init__(self, db: BaseDatabase, tag: str, capacity_deadline: float) -> None:
        self.db = db
        self.tag = tag
        self.start = time.monotonic()
        self.network_deadline = self.start + db.connect_timeout
        self.capacity_deadline = capacity_deadline
        self.auth_retries = 0
        self.last: BaseException | None = None
        self.kind = ErrorKind.TRANSIENT
        db.backoff.reset()

    def remaining(self) -> float:
        """Seconds the next attempt may take to reach the server."""
        return max(0.001, self.network_deadline - time.monotonic())

    def after_failure(
        self, exc: BaseException, kind: ErrorKind, attempt: int
    ) -> ConnectRetry | None:
        """Record a failed attempt; the retry to make (pause first), or None to give up."""
        db = self.db
        self.last, self.kind = exc, kind
        step = plan_connect_attempt(
            kind,
            delay=db.backoff.compute(attempt),
            now=time.monotonic(),
            auth_retries=self.auth_retries,
            network_deadline=self.network_deadline,
            capacity_deadline=self.capacity_deadline,
            refreshable=db.credentials.refreshable,
            refreshes=db.credentials.refreshes,
            # Asked only of fatal errors: it turns the option off as it answers.
            without_option=kind is ErrorKind.FATAL and db.driver.retry_without_option(exc),
        )
        if kind is ErrorKind.CAPACITY:
            # The server is fuller than the budget thinks: look again soon.
            db._next_limit_check = 0.0
        if step is None:
            return None
        self.auth_retries += step.auth_retry
        if step.refresh_credentials:
            log.info("authentication failed; fetching credentials again")
            db.credentials.invalidate()
        if step.counted:
            db.stats.connect_retries += 1
            log.debug(
                "connect attempt %d failed (%s); retrying in %.3fs", attempt, kind, step.pause
            )
        return step

    def succeeded(self) -> None:
        """A login worked: after a rotation, keep the credentials that did."""
        if self.auth_retries:
            self.db.credentials.confirm()

    def error(self) -> Exception:
        """The error to raise when the attempts are over."""
        return self.db._connect_error(self.last, self.kind, time.monotonic() - self.start)


def _is_budget(obj: object) -> bool:
    from ..budget import Budget

    return isinstance(obj, Budget)


class BaseDatabase:
    """What :class:`Database` and :class:`~fleetpool.AsyncDatabase` share: settings,
    identity (tag, budget name), and how a failed connect is reported.

    Subclasses supply the driver (:meth:`_make_driver`) and the I/O.
    """

    def __init__(
        self,
        dsn: str,
        *,
        budget: str | Budget | None = None,
        budget_name: str | None = None,
        function: str | None = None,
        lease_ttl: float = 120.0,
        max_wait: float = 5.0,
        mode: Mode = "reuse",
        connect_timeout: float = 5.0,
        statement_timeout: float | None = None,
        on_connect: Callable[[Any], Any] | None = None,
        password: PasswordSource | None = None,
        secret: str | None = None,
        iam_auth: bool = False,
        region: str | None = None,
        idle_timeout: float | Literal["auto"] | None = "auto",
        reset: Literal["auto", "always"] = "auto",
        backoff: Backoff | None = None,
        holder: str | None = None,
        reap_threshold: float | None = 0.8,
        reap_idle_after: float | None = None,
        reap_interval: float = 60.0,
        handle_signals: bool = True,
        autocommit: bool = True,
        metrics: MetricsMode = "auto",
        metrics_namespace: str | None = None,
        fair_handoff: bool = True,
        connect_rate: float | None = None,
        connect_burst: int = 1,
        budget_limit: str | None = None,
        limit_interval: float = 60.0,
    ) -> None:
        self.dsn = dsn
        self.target: Target = parse_dsn(dsn)
        if mode not in ("reuse", "per_invocation"):
            raise ConfigError(f"mode must be 'reuse' or 'per_invocation', got {mode!r}")
        if reset not in ("auto", "always"):
            raise ConfigError(f"reset must be 'auto' or 'always', got {reset!r}")
        if budget is not None and not isinstance(budget, str) and not _is_budget(budget):
            raise ConfigError(f"budget must be None, a budget URL or a Budget, got {budget!r}")
        if on_connect is not None and not callable(on_connect):
            raise ConfigError("on_connect must be a callable taking the connection")
        if reap_threshold is not None and not (0 < reap_threshold <= 1):
            raise ConfigError(f"reap_threshold must be in (0, 1] or None, got {reap_threshold!r}")
        self.lease_ttl = seconds("lease_ttl", lease_ttl)
        self.max_wait = seconds("max_wait", max_wait, zero_ok=True)
        self.connect_timeout = seconds("connect_timeout", connect_timeout)
        self.statement_timeout = (
            None if statement_timeout is None else seconds("statement_timeout", statement_timeout)
        )
        if idle_timeout == "auto":
            self.idle_timeout: float | None = server_idle_timeout(self.lease_ttl)
        else:
            self.idle_timeout = (
                None if idle_timeout is None else seconds("idle_timeout", idle_timeout)
            )
        self.reap_idle_after = (
            None if reap_idle_after is None else seconds("reap_idle_after", reap_idle_after)
        )
        self.reap_interval = seconds("reap_interval", reap_interval)
        self.reap_threshold = reap_threshold
        self.mode: Mode = mode
        self.reset_policy = reset
        self.on_connect = on_connect
        self.function = function or os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or "default"
        self.holder = holder or default_holder()
        given: Budget | None = None if budget is None or isinstance(budget, str) else budget
        self.budget_name = (
            budget_name
            if budget_name is not None
            else (given.name if given is not None else default_budget_name(self.target))
        )
        self._budget_spec = budget
        self._budget: Budget | None = given
        self.credentials = Credentials(
            self.target, password=password, secret=secret, iam_auth=iam_auth, region=region
        )
        if iam_auth:  # the token must only go to a server whose certificate is verified
            from ..tls import bearer_verification

            bearer_verification(self.target.engine, self.target.params)
        self.backoff: Backoff = backoff or EqualJitterBackoff()
        self.handle_signals = handle_signals
        self.autocommit = bool(autocommit)
        self.fair_handoff = bool(fair_handoff)
        if connect_rate is not None and not (
            isinstance(connect_rate, int | float)
            and not isinstance(connect_rate, bool)
            and 0 < connect_rate < float("inf")
        ):
            raise ConfigError(
                f"connect_rate must be None or a positive number per second, got {connect_rate!r}"
            )
        if (
            isinstance(connect_burst, bool)
            or not isinstance(connect_burst, int)
            or connect_burst < 1
        ):
            raise ConfigError(f"connect_burst must be an integer >= 1, got {connect_burst!r}")
        if connect_rate is not None and budget is None:
            raise ConfigError(
                "connect_rate needs a budget: the fleet's schedule lives in its store"
            )
        self.connect_rate = connect_rate
        self.connect_burst = connect_burst
        self.limit_headroom: float | None = None
        if budget_limit is not None:
            from ..budget._policy import parse_auto_limit

            self.limit_headroom = parse_auto_limit(budget_limit)
        if budget_limit is not None and self.limit_headroom is None:
            raise ConfigError(
                f"budget_limit must be None, 'auto' or 'auto:N%', got {budget_limit!r} "
                "(a fixed limit is set with budget.configure(limit=...))"
            )
        if self.limit_headroom is not None and budget is None:
            raise ConfigError("budget_limit needs a budget")
        self.limit_interval = seconds("limit_interval", limit_interval)
        self._next_limit_check = 0.0
        self._limit_probed = False
        self.metrics = InvocationMetrics(metrics, metrics_namespace)
        self.stats = Stats()
        self._driver: Any = None
        self._conn: Any = None
        self._lease: Lease | None = None
        self._tag: str | None = None
        self._session_id: int | None = None
        self._init_state()

    def __repr__(self) -> str:
        state = "connected" if self._conn is not None else "idle"
        lease = f" lease={self._lease.id[:8]}" if self._lease is not None else ""
        return f"<{type(self).__name__} {self.target.display()} {self.mode} {state}{lease}>"

    @property
    def engine(self) -> str:
        return self.target.engine

    @property
    def budget(self) -> Budget | None:
        """The budget (opened on first access when given as a URL)."""
        if self._budget is None and isinstance(self._budget_spec, str):
            from ..budget import open_budget

            self._budget = open_budget(self._budget_spec, self.budget_name)
        return self._budget

    @property
    def lease(self) -> Lease | None:
        return self._lease

    @property
    def session_id(self) -> int | None:
        """The server's id of the current session (backend pid / thread id)."""
        return self._session_id if self._conn is not None else None

    @property
    def tag(self) -> str | None:
        """The tag of the current session (``application_name`` / ``program_name``)."""
        return self._tag if self._conn is not None else None

    @property
    def tag_prefix(self) -> str:
        """What every session of this Database's budget carries at the start of its tag."""
        return f"fp:{budget_key(self.budget_name if self._budget_spec is not None else None)}:"

    def _new_tag(self) -> str:
        # os.urandom, not uuid: importing uuid (and platform) costs a cold start ~2 ms.
        token = os.urandom(6).hex()
        return f"{self.tag_prefix}{token}:{self.function}"[:63]

    def _connect_error(
        self, exc: BaseException | None, kind: ErrorKind, waited: float
    ) -> Exception:
        driver = self.driver
        code = driver.error_code(exc) if exc is not None else None
        where = self.target.display()
        detail = f"{type(exc).__name__}: {exc}".strip() if exc is not None else "no attempt made"
        err: FleetpoolError
        if kind is ErrorKind.CAPACITY:
            err = make_error(
                NoConnectionsLeft,
                driver.operational_error,
                f"{where} refused new connections (server full, code {code}) for "
                f"{waited:.2f}s of retries within max_wait={self.max_wait}s; last error: {detail}",
                sqlstate=code if isinstance(code, str) else None,
                errno=code if isinstance(code, int) else None,
                budget=self.budget_name,
                function=self.function,
                waited=waited,
                reason="server_full",
            )
        else:
            what = {
                ErrorKind.AUTH: "refused the login (authentication failed, or no such "
                "role or database)",
                ErrorKind.FATAL: "refused the connection",
                ErrorKind.TRANSIENT: f"could not be reached within connect_timeout="
                f"{self.connect_timeout}s",
            }[kind]
            err = make_error(
                DatabaseUnavailable,
                driver.operational_error,
                f"{where} {what} (code {code}); last error: {detail}",
                sqlstate=code if isinstance(code, str) else None,
                errno=code if isinstance(code, int) else None,
            )
        err.__cause__ = exc
        return err

    def _after_fork(self) -> None:
        # The socket and the lease belong to the parent: forget them, never close.
        if self._conn is not None:
            _ORPHANS.append(self._conn)
        self._conn = None
        self._lease = None
        self._tag = None
        self._pid = os.getpid()
        self._checked_out = False

    def _attempts(self, capacity_deadline: float) -> ConnectAttempts:
        """Start a connect: choose the session's tag and the deadlines of its retries."""
        if self._budget_spec is None or self._tag is None:
            # Without a budget each connection gets a fresh tag; with one, the
            # tag was chosen with the lease (it is in the lease's metadata).
            self._tag = self._new_tag()
        return ConnectAttempts(self, self._tag, capacity_deadline)

    def _acquire_args(self, tag: str, deadline: float) -> dict[str, Any]:
        """The budget's acquire for this Database's next session (tagged ``tag``)."""
        return {
            "function": self.function,
            "holder": self.holder,
            "ttl": self.lease_ttl,
            "wait": max(0.0, deadline - time.monotonic()),
            "meta": {"tag": tag, "engine": self.target.engine},
        }

    def _no_connections_left(self, exc: NoConnectionsLeft) -> Exception:
        """The budget's refusal as the driver-flavoured error the caller sees."""
        hint = " (the budget has limit 0: configure it first)" if exc.limit == 0 else ""
        return make_error(
            NoConnectionsLeft,
            self.driver.operational_error,
            str(exc) + hint,
            budget=exc.budget,
            function=exc.function,
            limit=exc.limit,
            in_use=exc.in_use,
            waited=exc.waited,
            reason=exc.reason,
        )

    def _checkin_plan(self, conn: Any, keep: bool) -> CheckinPlan | None:
        """What a check-in must do, from memory; None for a clean session kept warm
        with nobody waiting for the budget."""
        driver = self.driver
        always = self.reset_policy == "always"
        if keep and not always and driver.clean(conn):
            if not self._contended():
                return None
            report = SessionReport()
            contended = True
        else:
            report = driver.report(conn)
            contended = keep and self._contended()
        if always and not report.state:
            report = type(report)(**{**report.__dict__, "state": SessionState.OTHER})
        return plan_checkin(report, keep=keep, contended=contended)

    def _contended(self) -> bool:
        # No store call: the budget's contention signal (fair handoff).
        return (
            self.fair_handoff
            and self._lease is not None
            and self._budget is not None
            and self._budget.contended()
        )

    def _connect_slot_args(self, capacity_deadline: float) -> dict[str, Any]:
        """The budget's ``reserve_connect`` for this Database's next login (storm control)."""
        assert self.connect_rate is not None
        return {
            "rate": self.connect_rate,
            "burst": self.connect_burst,
            "within": max(0.0, capacity_deadline - time.monotonic()),
            "function": self.function,
        }

    def _limit_check_due(self) -> float | None:
        """The live limit's headroom when it is time to look at the server, else None."""
        if self.limit_headroom is None or self._budget is None:
            return None
        now = time.monotonic()
        if now < self._next_limit_check:
            return None
        self._next_limit_check = now + self.limit_interval
        return self.limit_headroom

    def _probe_wanted(self) -> bool:
        """After ``BudgetNotConfigured``: whether to set the live limit from a probe
        session first (once), over a session of the fleet's that holds no lease."""
        if self.limit_headroom is None or self._limit_probed:
            return False
        self._limit_probed = True
        return True

    def _probe_connect_args(self, deadline: float) -> dict[str, Any]:
        return {
            "autocommit": True,
            "tag": self._new_tag(),
            "timeout": max(0.001, min(self.connect_timeout, deadline - time.monotonic())),
            "idle_timeout": None,
            "statement_timeout": self.statement_timeout,
        }

    def _set_live_limit(self, budget: Budget, headroom: float, conn: Any, driver: Any) -> None:
        """Set the budget's limit from the server's (blocking: ``driver.fetch`` and the
        store; AsyncDatabase runs it in a worker thread over a loop bridge)."""
        from ..budget._policy import auto_limit

        if driver.engine == "postgresql":
            from ..engines.postgres import CAPACITY_SQL
        else:
            from ..engines.mysql import CAPACITY_SQL
        prefix = self.tag_prefix
        usable, others = driver.fetch(conn, CAPACITY_SQL, (prefix, prefix))[0]
        limit = auto_limit(int(usable), int(others), headroom)
        current = budget.config()
        if not current.configured or current.limit != limit:
            budget.resize(limit)
            self.stats.limit_changes += 1
            log.info(
                "budget %r: live limit %s -> %d (server allows %s, %s sessions not the "
                "fleet's, headroom %.0f%%)",
                budget.name,
                current.limit if current.configured else "unset",
                limit,
                usable,
                others,
                headroom * 100,
            )

    def _init_state(self) -> None:
        """Subclasses set up their lock and per-connection state here."""
        raise NotImplementedError

    @property
    def driver(self) -> DriverBase:
        """The driver adapter (imports the driver on first use)."""
        raise NotImplementedError


class Database(BaseDatabase):
    """A database for a serverless function: one warm connection, leased and kept clean.

    Create it in the global section (no I/O happens until first use)::

        db = fleetpool.Database(os.environ["DATABASE_URL"], budget=os.environ["BUDGET_URL"])

        @db.handler
        def handler(event, context):
            with db.transaction() as conn:
                ...

    Parameters:
        dsn: ``postgresql://user:pw@host:5432/db`` (psycopg 3) or
            ``mysql://``/``mariadb://`` (PyMySQL); query parameters go to the driver.
        budget: ``None`` (no fleet-wide limit), a budget URL (``redis://...``), or a
            :class:`fleetpool.Budget`.
        budget_name: the budget's name; default derived from engine, host, port, db.
        function: this function's name in the budget; default
            ``$AWS_LAMBDA_FUNCTION_NAME`` (else ``"default"``).
        lease_ttl: seconds a lease lasts without renewal (default 120). The server
            closes a session idle for half of it (``idle_timeout``).
        max_wait: seconds a checkout may wait for capacity: a lease, and retries
            of "too many connections" (default 5).
        mode: ``"reuse"`` (default) keeps the connection between invocations;
            ``"per_invocation"`` connects, works, closes and releases every time.
        connect_timeout: seconds to reach the server, across retries (default 5).
        statement_timeout: seconds a statement may run (server-enforced), or None.
        on_connect: ``callable(conn)`` run after each connect and reset
            (register types, set a search_path...): its settings are the baseline.
        password: a string, or a callable evaluated at every connect.
        secret: AWS Secrets Manager secret id or ARN (``aws`` extra).
        iam_auth: use RDS IAM authentication tokens (``aws`` extra). The token travels
            only over TLS to a verified server: ``sslmode=verify-full`` by default with
            the CA bundle from the URL (``sslrootcert=``; MySQL: ``ssl_ca=``), as the
            proxy's ``server_tls``; ``sslmode=require`` opts out of verification.
        region: AWS region for ``secret``/``iam_auth``.
        idle_timeout: server-side idle timeout in seconds; default half of ``lease_ttl``;
            ``None`` leaves the server's setting alone.
        reset: ``"auto"`` (reset only a session seen dirty) or ``"always"``.
        backoff: a strategy with ``compute(attempt)``; default equal jitter 50 ms..2 s.
        reap_threshold: server utilisation (0..1) above which a connecting
            container may run the reaper (rate-limited fleet-wide); None disables.
        reap_idle_after: also reap the fleet's sessions idle this many seconds.
        reap_interval: at most one reap per this many seconds (per container,
            and fleet-wide through the budget).
        handle_signals: close and release on SIGTERM (chaining the previous handler).
        autocommit: the connection's autocommit mode (default True: statements
            outside :meth:`transaction` commit at once). ``False`` suits code
            that manages transactions itself (SQLAlchemy); a transaction left
            open at check-in is rolled back either way.
        metrics: what :meth:`handler` does with the budget's metrics at the end of
            each invocation: ``"auto"`` (default: on Lambda, one CloudWatch EMF
            blob, through aws-lambda-powertools when installed; nothing
            elsewhere), ``"emf"``, ``"powertools"`` or ``"off"``.
        metrics_namespace: the EMF namespace; default
            ``$FLEETPOOL_METRICS_NAMESPACE``, else ``fleetpool``.
        fair_handoff: when others wait for the budget, give the lease back (and
            close the connection) at check-in instead of keeping it warm (default
            True). Known without a store call on Redis and memory budgets: a
            clean invocation with nobody waiting still makes none.
        connect_rate: storm control: at most this many new connections per second
            fleet-wide (plus ``connect_burst`` at once), scheduled in the budget's
            store (Redis or memory; one store call per login, none otherwise). The
            wait counts against ``max_wait``. Use the same value in every function.
        connect_burst: logins allowed at once after a quiet spell (default 1).
        budget_limit: ``"auto"`` (90%) or ``"auto:80%"``: a live limit. After a
            connect, at most every ``limit_interval`` seconds and at once after
            "too many connections", the budget's limit is set from the server's
            ``max_connections`` minus its reserved slots and the sessions that are
            not the fleet's, times the headroom; function limits scale as shares.
            None (default) leaves the budget's limit alone.
        limit_interval: seconds between looks at the server for ``budget_limit``.

    Raises:
        fleetpool.ConfigError: for a malformed URL or argument (at construction).
    """

    def _init_state(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self._checked_out = False
        self._pid = os.getpid()
        self._next_reap_check = 0.0
        self._registered = False
        self.last_reap: ReapReport | None = None

    # -- public surface -----------------------------------------------------

    def connection(self) -> _ConnectionScope:
        """``with db.connection() as conn:`` -- the driver's connection, checked in after.

        Nested uses (and uses inside :meth:`handler`) share one checkout.

        Raises:
            fleetpool.NoConnectionsLeft: no capacity within ``max_wait`` (also the
                driver's ``OperationalError``).
            fleetpool.DatabaseUnavailable: the server could not be reached or
                refused the login (also the driver's ``OperationalError``).
        """
        return _ConnectionScope(self)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """``with db.transaction() as conn:`` -- commit on success, roll back on error."""
        with self.connection() as conn, self.driver.transaction(conn):
            yield conn

    def invocation(self) -> _InvocationScope:
        """A scope for one invocation: connections used inside are checked in at its end."""
        return _InvocationScope(self)

    def handler(self, fn: Callable[[Any, Any], R]) -> Callable[[Any, Any], R]:
        """Decorate a Lambda-style ``handler(event, context)``.

        The connection is checked in (cleaned, or closed) after every
        invocation, also when the handler raises; then the budget's metrics
        are written (see ``metrics``). Inside, use :meth:`connection` or
        :meth:`transaction` as usual.
        """

        @functools.wraps(fn)
        def wrapper(event: Any, context: Any) -> R:
            try:
                with _InvocationScope(self):
                    return fn(event, context)
            finally:
                if self._budget is not None:
                    self.metrics.flush(self._budget.metrics, context)

        return wrapper

    def mark_dirty(self) -> None:
        """Tell the client that this invocation left session state it could not see."""
        with self._lock:
            if self._conn is not None:
                self.driver.mark(self._conn, SessionState.OTHER)

    def close(self, timeout: float | None = None) -> None:
        """Close the connection and release the lease. Safe to call more than once.

        ``timeout`` bounds the wait for a concurrent checkout to finish (shutdown).
        """
        got = self._lock.acquire(timeout=-1 if timeout is None else timeout)
        try:
            self._discard()
            self._release()
        finally:
            if got:
                self._lock.release()
        shutdown.unregister(self)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def driver(self) -> Driver:
        if self._driver is None:
            if self.target.engine == "postgresql":
                from ._postgres import PostgresDriver

                self._driver = PostgresDriver(self.target)
            else:
                from ._mysql import MySQLDriver

                self._driver = MySQLDriver(self.target)
        return self._driver  # type: ignore[no-any-return]

    def checkout(self) -> Any:
        """Check out the connection for an adapter that cannot use ``with``.

        The same as entering :meth:`connection`: it must be paired with
        :meth:`checkin` from the same thread (nested pairs share one checkout).
        Raises what :meth:`connection` raises.
        """
        return self._enter(True)

    def checkin(self, failed: bool = False) -> None:
        """End a :meth:`checkout`: the same as leaving :meth:`connection`.

        ``failed`` says the use ended with an error (as an exception leaving the
        ``with`` block does).
        """
        self._exit(failed)

    # -- scopes -------------------------------------------------------------

    def _enter(self, checkout: bool) -> Any:
        self._lock.acquire()
        try:
            if checkout and not self._checked_out:
                self._checkout()
            self._depth += 1
        except BaseException:
            self._lock.release()
            raise
        return self._conn

    def _exit(self, failed: bool) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._checked_out:
                self._checkin(failed)
        finally:
            self._lock.release()

    # -- checkout -----------------------------------------------------------

    def _checkout(self) -> None:
        if os.getpid() != self._pid:
            self._after_fork()
        self.stats.checkouts += 1
        deadline = time.monotonic() + self.max_wait
        budget = self._budget if self._budget is not None else self.budget
        if budget is not None:
            lease = self._lease
            plan = plan_checkout(
                time.time(),
                budgeted=True,
                lease_expires_at=lease.expires_at if lease is not None else None,
                lease_ttl=self.lease_ttl,
                has_connection=self._conn is not None,
            )
            if plan.drop_connection:
                self._discard()
            if plan.acquire:
                self._acquire(budget, deadline)
            elif plan.renew and lease is not None:
                try:
                    self._lease = budget.renew(lease, self.lease_ttl)
                    self.stats.renewals += 1
                except LeaseLost:
                    log.info("lease %s was lost; reconnecting under a new lease", lease.id)
                    self._lease = None
                    self._discard()
                    self._acquire(budget, deadline)
        conn = self._conn
        if conn is not None and not self.driver.alive(conn):
            log.info("the server closed session %s; reconnecting", self._session_id)
            self._discard()
            self.stats.reconnects += 1
        if self._conn is None:
            self._connect(deadline)
        self._checked_out = True

    def _acquire(self, budget: Budget, deadline: float) -> None:
        tag = self._new_tag()
        try:
            self._lease = budget.acquire(**self._acquire_args(tag, deadline))
        except BudgetNotConfigured:
            if not self._probe_wanted():
                raise
            self._probe_limit(deadline)
            self._acquire(budget, deadline)
            return
        except NoConnectionsLeft as exc:
            raise self._no_connections_left(exc) from exc
        self._tag = tag
        self.stats.acquires += 1

    def _connect(self, capacity_deadline: float) -> None:
        driver = self.driver
        attempts = self._attempts(capacity_deadline)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if self.connect_rate is not None:
                self._connect_slot(capacity_deadline)
            login = self.credentials.resolve()
            try:
                conn = driver.connect(
                    login,
                    autocommit=self.autocommit,
                    tag=attempts.tag,
                    timeout=attempts.remaining(),
                    idle_timeout=self.idle_timeout,
                    statement_timeout=self.statement_timeout,
                )
            except driver.connect_errors as exc:
                step = attempts.after_failure(exc, driver.error_kind(exc), attempt)
                if step is None:
                    break
                if step.pause is not None:
                    time.sleep(step.pause)
                continue
            attempts.succeeded()
            self._on_connected(conn)
            if self._conn is None:
                # The session died during connect-time housekeeping (e.g. the
                # server ended it while the reaper ran): connect again.
                continue
            return
        raise attempts.error()

    def _connect_slot(self, capacity_deadline: float) -> None:
        """Storm control: wait for this login's slot in the fleet's connect schedule."""
        budget = self.budget
        assert budget is not None
        try:
            delay = budget.reserve_connect(**self._connect_slot_args(capacity_deadline))
        except NoConnectionsLeft as exc:
            raise self._no_connections_left(exc) from exc
        if delay > 0:
            self.stats.connect_waits += 1
            time.sleep(delay)

    def _on_connected(self, conn: Any) -> None:
        driver = self.driver
        self._conn = conn
        self._session_id = driver.session_id(conn)
        self.stats.connects += 1
        try:
            if self.on_connect is not None:
                self.on_connect(conn)
            driver.rebase(conn)
        except BaseException:
            self._discard()
            raise
        budget = self._budget
        annotate = getattr(budget, "annotate", None)
        if annotate is not None and self._lease is not None:
            try:
                self._lease = annotate(self._lease, {"session_id": self._session_id})
            except Exception:
                log.warning("could not record session id with lease", exc_info=True)
        if not self._registered:
            shutdown.register(self, signals=self.handle_signals)
            self._registered = True
        self._maybe_resize(conn)
        if self._conn is not None:
            self._maybe_reap(conn)

    # -- check-in -----------------------------------------------------------

    def _checkin(self, failed: bool) -> None:
        self._checked_out = False
        conn = self._conn
        keep = self.mode == "reuse"
        if conn is None:
            if not keep:
                self._release()
            return
        driver = self.driver
        plan = self._checkin_plan(conn, keep)
        if plan is None:
            return
        if plan.offer_lease and self._hand_off():
            return
        if plan.close:
            self._discard()
            if not keep:
                self._release()
            return
        try:
            if plan.reset:
                driver.reset(conn)
                self.stats.resets += 1
                if self.on_connect is not None:
                    self.on_connect(conn)
                    driver.rebase(conn)
            elif plan.rollback:
                driver.rollback(conn)
                self.stats.rollbacks += 1
                if plan.restore_client:
                    driver.restore_client(conn)
            elif plan.restore_client:
                driver.restore_client(conn)
        except Exception:
            log.warning("could not clean session %s; closing it", self._session_id, exc_info=True)
            self._discard()

    def _hand_off(self) -> bool:
        """Offer the lease to waiters; True when it was given (connection closed first,
        so the session is gone before a waiter can count on its slot)."""
        lease, budget = self._lease, self._budget
        if lease is None or budget is None or not budget.offer(lease):
            return False
        conn, self._conn = self._conn, None
        if conn is not None:
            self.stats.closes += 1
            self.driver.close_and_wait(conn, HANDOFF_CLOSE_WAIT)
        self._release()
        self.stats.handoffs += 1
        return True

    # -- teardown -----------------------------------------------------------

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self.stats.closes += 1
            self.driver.close(conn)

    def _release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None and self._budget is not None:
            self.stats.releases += 1
            try:
                self._budget.release(lease)
            except Exception:
                log.warning("could not release lease %s; it will expire", lease.id, exc_info=True)
        self._tag = None

    # -- live limit -----------------------------------------------------------

    def _maybe_resize(self, conn: Any) -> None:
        headroom, budget = self._limit_check_due(), self._budget
        if headroom is None or budget is None:
            return
        driver = self.driver
        try:
            self._set_live_limit(budget, headroom, conn, driver)
        except Exception:
            log.warning("could not set the live budget limit; keeping it", exc_info=True)
        finally:
            try:
                if not driver.alive(conn):
                    raise ConnectionError("session ended while reading the server's limit")
                if driver.report(conn).in_transaction:
                    driver.rollback(conn)
            except Exception:
                self._discard()

    def _probe_limit(self, deadline: float) -> None:
        """Set the live limit of an unconfigured budget from a short session of its own."""
        budget, headroom = self._budget, self.limit_headroom
        assert budget is not None and headroom is not None
        conn = self.driver.connect(self.credentials.resolve(), **self._probe_connect_args(deadline))
        try:
            self._set_live_limit(budget, headroom, conn, self.driver)
            self._next_limit_check = time.monotonic() + self.limit_interval
        finally:
            self.driver.close_and_wait(conn, HANDOFF_CLOSE_WAIT)

    # -- reaper -------------------------------------------------------------

    def _maybe_reap(self, conn: Any) -> None:
        if self.reap_threshold is None:
            return
        from . import reaper

        now = time.monotonic()
        if not reaper.reap_check_due(now, self._next_reap_check):
            return
        self._next_reap_check = now + self.reap_interval
        try:
            report = reaper.run_if_needed(
                self.driver,
                conn,
                budget=self._budget,
                holder=self.holder,
                threshold=self.reap_threshold,
                interval=self.reap_interval,
                tag_prefix=self.tag_prefix,
                idle_after=self.reap_idle_after,
            )
            if report is None:
                return
            self.stats.reaps += 1
            self.last_reap = report
            log.info("reaper: %s", report.summary())
        except Exception:
            log.warning("reaper run failed; continuing", exc_info=True)
        finally:
            # Whatever the reaper did, the user gets a clean session.
            try:
                if not self.driver.alive(conn):
                    raise ConnectionError("session ended during the reaper run")
                if self.driver.report(conn).in_transaction:
                    self.driver.rollback(conn)
                self.driver.rebase(conn)
            except Exception:
                log.warning("could not clean up after the reaper; reconnecting", exc_info=True)
                self._discard()


class _ConnectionScope:
    __slots__ = ("db",)

    def __init__(self, db: Database) -> None:
        self.db = db

    def __enter__(self) -> Any:
        return self.db._enter(True)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db._exit(exc_type is not None)


class _InvocationScope:
    __slots__ = ("db",)

    def __init__(self, db: Database) -> None:
        self.db = db

    def __enter__(self) -> Database:
        self.db._enter(False)
        return self.db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db._exit(exc_type is not None)


def reap(
    dsn: str,
    budget: str | Budget | None = None,
    idle_after: float | None = None,
    dry_run: bool = False,
    *,
    budget_name: str | None = None,
    match_untagged: bool = False,
    rds: bool = False,
    connect_timeout: float = 5.0,
    password: str | None = None,
) -> ReapReport:
    """End the fleet's sessions whose leases expired (and, with ``idle_after``, idle ones).

    Args:
        dsn: the database URL (the same one the functions use).
        budget: the fleet's budget (URL or :class:`fleetpool.Budget`); without one
            no lease can be proved expired and only ``idle_after`` applies, to
            sessions tagged by fleetpool Databases without a budget.
        idle_after: seconds; also end the fleet's sessions idle at least that long.
        dry_run: report what would be done, change nothing.
        budget_name: the budget's name when ``budget`` is a URL (default: derived
            from the DSN, as ``Database`` does).
        match_untagged: MySQL without performance_schema: treat the same user's
            untagged sessions as the fleet's for idle reaping (serverless-mysql
            behaviour; may end other programs' idle sessions of that user).
        rds: use ``CALL mysql.rds_kill`` where ``KILL`` is not permitted.

    Returns:
        A :class:`~fleetpool.client.reaper.ReapReport` of what was seen, killed,
        spared and skipped.
    """
    from . import reaper

    # The fleet's Database, built as its functions build it (no I/O), names the
    # budget and the tag prefix. The reaper's own connection holds no lease, so
    # it works when the budget is full -- which is when a reaper is wanted.
    fleet = Database(
        dsn,
        budget=budget,
        budget_name=budget_name if budget is None or isinstance(budget, str) else None,
        reap_threshold=None,
        handle_signals=False,
    )
    own = Database(
        dsn,
        reap_threshold=None,
        handle_signals=False,
        idle_timeout=None,
        connect_timeout=connect_timeout,
        function=reaper.REAPER_FUNCTION,
        password=password,
    )
    fleet_budget = fleet.budget
    try:
        with own.connection() as conn:
            return reaper.reap_with(
                own.driver,
                conn,
                budget=fleet_budget,
                tag_prefix=fleet.tag_prefix,
                idle_after=idle_after,
                dry_run=dry_run,
                match_untagged=match_untagged,
                rds=rds,
            )
    finally:
        own.close()
        if isinstance(budget, str) and fleet_budget is not None:
            fleet_budget.close()


__all__ = ["Database", "Stats", "reap"]
