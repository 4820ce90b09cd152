"""The client's decisions as pure functions of observed state and ``now``.

Strategy: checkout and check-in each make one decision -- "which store and
server calls does this invocation need?" -- from facts the client already holds
in memory (the lease's expiry, the driver's transaction status, the statements
it saw). Writing the decisions as pure functions keeps I/O out of them, makes
every branch unit-testable with plain numbers, and makes the hot-path promise
checkable: a warm, clean invocation plans *nothing*. The plans are named tuples,
not dataclasses: a function's cold start builds them, and a frozen dataclass
costs about ten times as much to define.

The timing rule ties the lease and the server together. The lease is renewed at
checkout only when less than ``renew_fraction`` (half) of its TTL remains, so a
warm checkout costs at most one store round trip and usually none. The server
is told to close an idle session after :func:`server_idle_timeout` -- half the
TTL -- so a session left idle always ends before the lease that covers it: at
the last statement at least half the TTL remained. A frozen or dead container's
session therefore never outlives its lease by more than one invocation's length.

Connecting makes one decision per failed attempt (:func:`plan_connect_attempt`):
retry now, retry after a pause that fits the deadline of the error's kind, or
give up. "Too many connections" waits within the capacity deadline (shared with
the lease wait), network errors within the network deadline (``connect_timeout``).
"""

from __future__ import annotations

from typing import NamedTuple

from ..backoff import plan_retry
from ..engines import ErrorKind, SessionState

RENEW_FRACTION = 0.5
#: Quick retries of a refused login (see :func:`plan_connect_attempt`).
AUTH_RETRIES = 3


def server_idle_timeout(lease_ttl: float, renew_fraction: float = RENEW_FRACTION) -> float:
    """Seconds after which the server should close an idle session covered by a lease."""
    return max(1.0, lease_ttl * renew_fraction)


class CheckoutPlan(NamedTuple):
    """What a checkout must do before handing out the connection."""

    #: Take a new lease (none held, or it expired).
    acquire: bool = False
    #: Extend the held lease (less than ``renew_fraction`` of its TTL remains).
    renew: bool = False
    #: Close the warm connection first: its lease is gone, so its capacity may
    #: already be someone else's and its tag names a dead lease.
    drop_connection: bool = False

    @property
    def store_calls(self) -> int:
        return int(self.acquire or self.renew)


NOTHING = CheckoutPlan()


def plan_checkout(
    now: float,
    *,
    budgeted: bool,
    lease_expires_at: float | None,
    lease_ttl: float,
    has_connection: bool,
    renew_fraction: float = RENEW_FRACTION,
) -> CheckoutPlan:
    """Decide the lease work of a checkout (connection liveness is checked separately)."""
    if not budgeted:
        return NOTHING
    if lease_expires_at is None or now >= lease_expires_at:
        return CheckoutPlan(acquire=True, drop_connection=has_connection)
    if lease_expires_at - now < lease_ttl * renew_fraction:
        return CheckoutPlan(renew=True)
    return NOTHING


class SessionReport(NamedTuple):
    """What the driver knows about a session after an invocation, read without I/O."""

    #: The connection is closed or its socket failed.
    broken: bool = False
    #: A statement is still running or a result is still unread.
    busy: bool = False
    #: A transaction is open (idle or failed).
    in_transaction: bool = False
    #: State the statements seen may have left behind.
    state: SessionState = SessionState.NONE
    #: A server-reported parameter or a client-side default (autocommit,
    #: isolation level...) differs from the value at connect time.
    settings_changed: bool = False
    #: Client-side attributes changed that can be restored without a round trip.
    client_changed: bool = False


class CheckinPlan(NamedTuple):
    """What a check-in must do so the next invocation finds a clean session."""

    close: bool = False
    rollback: bool = False
    reset: bool = False
    restore_client: bool = False
    #: Fair handoff: ask the store whether waiters need this lease; if so close
    #: the connection and release the lease instead of cleaning up.
    offer_lease: bool = False

    @property
    def round_trips(self) -> int:
        if self.close:
            return 0
        return int(self.rollback) + int(self.reset)


CLEAN = CheckinPlan()


def plan_checkin(report: SessionReport, *, keep: bool, contended: bool = False) -> CheckinPlan:
    """Decide the clean-up of a check-in. ``keep=False`` (per-invocation mode) closes.

    ``contended``: a waiter signalled (fair handoff). A kept lease is then
    offered to the store first; the clean-up below only runs if it is kept.
    """
    offer = keep and contended
    if not keep or report.broken or report.busy:
        return CheckinPlan(close=True, offer_lease=offer)
    if report.state & SessionState.DATABASE:
        # Only a new connection restores the default database everywhere.
        return CheckinPlan(close=True, offer_lease=offer)
    reset = bool(report.state) or report.settings_changed
    return CheckinPlan(
        rollback=report.in_transaction,
        reset=reset,
        restore_client=report.client_changed or reset or report.in_transaction,
        offer_lease=offer,
    )


class ConnectRetry(NamedTuple):
    """Try connecting again: what to do first."""

    #: Seconds to sleep before the attempt; None: at once.
    pause: float | None = None
    #: Fetch the credentials again first (they may have been rotated).
    refresh_credentials: bool = False
    #: This retry counts against ``auth_retries``.
    auth_retry: bool = False
    #: A capacity or network retry (counted in ``Stats.connect_retries``).
    counted: bool = False


def plan_connect_attempt(
    kind: ErrorKind,
    *,
    delay: float,
    now: float,
    auth_retries: int,
    network_deadline: float,
    capacity_deadline: float,
    refreshable: bool,
    without_option: bool = False,
    max_auth_retries: int = AUTH_RETRIES,
    refreshes: int = 1,
) -> ConnectRetry | None:
    """Decide what follows a failed connect attempt; None means give up.

    Args:
        kind: the class of the attempt's error.
        delay: the backoff's pause for this attempt (seconds), before fitting a deadline.
        now: the monotonic clock after the failure.
        auth_retries: authentication retries made so far.
        network_deadline: give up on network errors at this time.
        capacity_deadline: give up on "server full" (and late login refusals) at this time.
        refreshable: the credentials can be fetched again (secret, IAM token, callable).
        without_option: a fatal error came from an optional session setting the
            driver has just turned off, so an immediate retry may succeed.
        refreshes: how many of the first authentication retries fetch the
            credentials again at once (a secret: its pending, then its current version).
    """
    if kind is ErrorKind.AUTH and auth_retries < max_auth_retries:
        # A few times: first with fresh credentials (rotation); then because a
        # PostgreSQL login refused by a full server whose slot freed before we
        # probed looks the same from the client (libpq gives no SQLSTATE for a
        # failed connect). A wrong password costs only these few quick attempts.
        if auth_retries < refreshes:
            return ConnectRetry(refresh_credentials=refreshable, auth_retry=True)
        pause = plan_retry(delay, now, capacity_deadline)
        return None if pause is None else ConnectRetry(pause=pause, auth_retry=True)
    if kind is ErrorKind.FATAL and without_option:
        return ConnectRetry()
    if kind is ErrorKind.AUTH or kind is ErrorKind.FATAL:
        return None
    deadline = capacity_deadline if kind is ErrorKind.CAPACITY else network_deadline
    pause = plan_retry(delay, now, deadline)
    return None if pause is None else ConnectRetry(pause=pause, counted=True)


__all__ = [
    "AUTH_RETRIES",
    "CLEAN",
    "NOTHING",
    "RENEW_FRACTION",
    "CheckinPlan",
    "CheckoutPlan",
    "ConnectRetry",
    "SessionReport",
    "plan_checkin",
    "plan_checkout",
    "plan_connect_attempt",
    "server_idle_timeout",
]
