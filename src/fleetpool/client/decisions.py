"""The client's decisions as pure functions of observed state and ``now``.

Strategy: checkout and check-in each make one decision -- "which store and
server calls does this invocation need?" -- from facts the client already holds
in memory (the lease's expiry, the driver's transaction status, the statements
it saw). Writing the decisions as pure functions keeps I/O out of them, makes
every branch unit-testable with plain numbers, and makes the hot-path promise
checkable: a warm, clean invocation plans *nothing*.

The timing rule ties the lease and the server together. The lease is renewed at
checkout only when less than ``renew_fraction`` (half) of its TTL remains, so a
warm checkout costs at most one store round trip and usually none. The server
is told to close an idle session after :func:`server_idle_timeout` -- half the
TTL -- so a session left idle always ends before the lease that covers it: at
the last statement at least half the TTL remained. A frozen or dead container's
session therefore never outlives its lease by more than one invocation's length.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engines import SessionState

RENEW_FRACTION = 0.5


def server_idle_timeout(lease_ttl: float, renew_fraction: float = RENEW_FRACTION) -> float:
    """Seconds after which the server should close an idle session covered by a lease."""
    return max(1.0, lease_ttl * renew_fraction)


@dataclass(frozen=True)
class CheckoutPlan:
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


@dataclass(frozen=True)
class SessionReport:
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


@dataclass(frozen=True)
class CheckinPlan:
    """What a check-in must do so the next invocation finds a clean session."""

    close: bool = False
    rollback: bool = False
    reset: bool = False
    restore_client: bool = False

    @property
    def round_trips(self) -> int:
        if self.close:
            return 0
        return int(self.rollback) + int(self.reset)


CLEAN = CheckinPlan()


def plan_checkin(report: SessionReport, *, keep: bool) -> CheckinPlan:
    """Decide the clean-up of a check-in. ``keep=False`` (per-invocation mode) closes."""
    if not keep or report.broken or report.busy:
        return CheckinPlan(close=True)
    if report.state & SessionState.DATABASE:
        # Only a new connection restores the default database everywhere.
        return CheckinPlan(close=True)
    reset = bool(report.state) or report.settings_changed
    return CheckinPlan(
        rollback=report.in_transaction,
        reset=reset,
        restore_client=report.client_changed or reset or report.in_transaction,
    )


__all__ = [
    "CLEAN",
    "NOTHING",
    "RENEW_FRACTION",
    "CheckinPlan",
    "CheckoutPlan",
    "SessionReport",
    "plan_checkin",
    "plan_checkout",
    "server_idle_timeout",
]
