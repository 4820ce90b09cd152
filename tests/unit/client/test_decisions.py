"""The client's pure decisions: checkout lease work, check-in clean-up, timeouts."""

from __future__ import annotations

import pytest

from fleetpool.client.decisions import (
    AUTH_RETRIES,
    CLEAN,
    NOTHING,
    CheckinPlan,
    CheckoutPlan,
    ConnectRetry,
    SessionReport,
    plan_checkin,
    plan_checkout,
    plan_connect_attempt,
    server_idle_timeout,
)
from fleetpool.engines import ErrorKind, SessionState


def co(
    now: float, expires: float | None, *, conn: bool = True, budgeted: bool = True
) -> CheckoutPlan:
    return plan_checkout(
        now, budgeted=budgeted, lease_expires_at=expires, lease_ttl=100.0, has_connection=conn
    )


def test_no_budget_never_touches_the_store() -> None:
    assert co(1000.0, None, budgeted=False) is NOTHING


def test_first_checkout_acquires() -> None:
    assert co(0.0, None, conn=False) == CheckoutPlan(acquire=True)


def test_fresh_lease_needs_nothing() -> None:
    # More than half the TTL left: zero store round trips.
    assert co(10.0, 100.0) is NOTHING
    assert co(49.9, 100.0).store_calls == 0


def test_renew_when_less_than_half_remains() -> None:
    assert co(50.1, 100.0) == CheckoutPlan(renew=True)
    assert co(99.9, 100.0).store_calls == 1


def test_expired_lease_drops_the_connection_and_reacquires() -> None:
    assert co(100.0, 100.0) == CheckoutPlan(acquire=True, drop_connection=True)
    assert co(500.0, 100.0, conn=False) == CheckoutPlan(acquire=True, drop_connection=False)


def test_server_idle_timeout_is_half_the_lease() -> None:
    assert server_idle_timeout(120) == 60
    assert server_idle_timeout(1) == 1.0  # floor: never below a second


def test_session_idle_timeout_never_outlives_its_lease() -> None:
    # After any checkout, the lease covers at least the server's idle timeout.
    ttl = 100.0
    for now in (0.0, 10.0, 49.0, 51.0, 99.0):
        expires = 100.0
        plan = co(now, expires)
        after = now + ttl if plan.renew else expires
        assert after - now >= server_idle_timeout(ttl)


def test_clean_session_plans_nothing() -> None:
    plan = plan_checkin(SessionReport(), keep=True)
    assert plan == CLEAN and plan.round_trips == 0


@pytest.mark.parametrize("state", list(SessionState)[1:])
def test_any_session_state_resets(state: SessionState) -> None:
    plan = plan_checkin(SessionReport(state=state), keep=True)
    if state is SessionState.DATABASE:
        assert plan.close
    else:
        assert plan.reset and not plan.close


def test_open_transaction_rolls_back_only() -> None:
    plan = plan_checkin(SessionReport(in_transaction=True), keep=True)
    assert plan == CheckinPlan(rollback=True, restore_client=True)
    assert plan.round_trips == 1


def test_changed_reported_setting_resets() -> None:
    assert plan_checkin(SessionReport(settings_changed=True), keep=True).reset


def test_client_side_change_is_restored_without_round_trip() -> None:
    plan = plan_checkin(SessionReport(client_changed=True), keep=True)
    assert plan.restore_client and plan.round_trips == 0


@pytest.mark.parametrize(
    "report", [SessionReport(broken=True), SessionReport(busy=True, in_transaction=True)]
)
def test_broken_or_busy_sessions_are_closed(report: SessionReport) -> None:
    assert plan_checkin(report, keep=True) == CheckinPlan(close=True)


def test_per_invocation_mode_closes_always() -> None:
    assert plan_checkin(SessionReport(), keep=False).close


# -- connect retries ----------------------------------------------------------


def attempt(
    kind: ErrorKind,
    *,
    now: float = 10.0,
    delay: float = 0.5,
    auth_retries: int = 0,
    refreshable: bool = False,
    without_option: bool = False,
) -> ConnectRetry | None:
    return plan_connect_attempt(
        kind,
        delay=delay,
        now=now,
        auth_retries=auth_retries,
        network_deadline=12.0,
        capacity_deadline=20.0,
        refreshable=refreshable,
        without_option=without_option,
    )


def test_network_errors_retry_within_the_network_deadline() -> None:
    assert attempt(ErrorKind.TRANSIENT) == ConnectRetry(pause=0.5, counted=True)
    step = attempt(ErrorKind.TRANSIENT, now=11.8)
    assert step is not None and step.counted and step.pause == pytest.approx(0.2)
    assert attempt(ErrorKind.TRANSIENT, now=12.0) is None


def test_a_full_server_is_waited_for_until_the_capacity_deadline() -> None:
    assert attempt(ErrorKind.CAPACITY, now=15.0) == ConnectRetry(pause=0.5, counted=True)
    assert attempt(ErrorKind.CAPACITY, now=20.0) is None


def test_first_login_refusal_refreshes_rotating_credentials_at_once() -> None:
    assert attempt(ErrorKind.AUTH, refreshable=True) == ConnectRetry(
        refresh_credentials=True, auth_retry=True
    )
    # Static credentials: one immediate retry all the same (a full PostgreSQL looks alike).
    assert attempt(ErrorKind.AUTH) == ConnectRetry(auth_retry=True)


def test_later_login_refusals_back_off_then_give_up() -> None:
    assert attempt(ErrorKind.AUTH, auth_retries=1) == ConnectRetry(pause=0.5, auth_retry=True)
    assert attempt(ErrorKind.AUTH, auth_retries=2, now=20.0) is None
    assert attempt(ErrorKind.AUTH, auth_retries=AUTH_RETRIES) is None


def test_fatal_errors_give_up_unless_an_option_was_dropped() -> None:
    assert attempt(ErrorKind.FATAL) is None
    assert attempt(ErrorKind.FATAL, without_option=True) == ConnectRetry()
    # Only a fatal error can be caused by the optional setting.
    assert attempt(ErrorKind.AUTH, auth_retries=3, without_option=True) is None


def test_checkin_offers_a_kept_lease_only_when_contended() -> None:
    from fleetpool.client.decisions import SessionReport, plan_checkin

    clean = SessionReport()
    assert not plan_checkin(clean, keep=True).offer_lease
    assert plan_checkin(clean, keep=True, contended=True).offer_lease
    # Per-invocation mode releases anyway: nothing to offer.
    assert not plan_checkin(clean, keep=False, contended=True).offer_lease
    dirty = plan_checkin(SessionReport(in_transaction=True), keep=True, contended=True)
    assert dirty.offer_lease and dirty.rollback
    broken = plan_checkin(SessionReport(broken=True), keep=True, contended=True)
    assert broken.offer_lease and broken.close


def test_a_secret_gets_two_immediate_refreshes_then_paced_retries() -> None:
    from fleetpool.client.decisions import plan_connect_attempt
    from fleetpool.engines import ErrorKind

    def step(retries: int) -> object:
        return plan_connect_attempt(
            ErrorKind.AUTH,
            delay=0.1,
            now=0.0,
            auth_retries=retries,
            network_deadline=5.0,
            capacity_deadline=5.0,
            refreshable=True,
            refreshes=2,
        )

    first, second, third = step(0), step(1), step(2)
    assert first.refresh_credentials and first.pause is None  # type: ignore[attr-defined]
    assert second.refresh_credentials and second.pause is None  # type: ignore[attr-defined]
    assert not third.refresh_credentials and third.pause == 0.1  # type: ignore[attr-defined]
    assert step(3) is None
