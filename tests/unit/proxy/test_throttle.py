"""The login throttle's rules, on a virtual clock: growing delays, bans, caps on logins
in progress, other addresses untouched, bounded memory."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpool.proxy.stats import Stats
from fleetpool.proxy.throttle import BANNED, BUSY, LoginThrottle, ThrottleRules

RULES = ThrottleRules(
    delay=0.1, delay_max=2.0, ban_after=5, ban_time=60.0, max_in_progress=10, max_per_address=3
)


def fail(t: LoginThrottle, addr: str, now: float) -> float:
    assert t.admit(addr, now) is None
    delay = t.failed(addr, now)
    t.release(addr)
    return delay


def test_delays_double_then_cap_then_ban() -> None:
    stats = Stats()
    t = LoginThrottle(RULES, stats)
    delays = [fail(t, "10.0.0.1", now=float(i)) for i in range(4)]
    assert delays == [0.1, 0.2, 0.4, 0.8]
    assert fail(t, "10.0.0.1", 4.0) == 2.0  # the fifth failure bans: the longest delay
    assert t.admit("10.0.0.1", 5.0) == BANNED
    assert stats.login_bans == 1 and stats.logins_refused_banned == 1
    # A banned attempt holds a slot until refused (ban_delay later): a tarpit.
    assert t.ban_delay == 2.0 and t.in_progress == 1
    t.admit("10.0.0.1", 5.0)
    t.admit("10.0.0.1", 5.0)
    assert t.admit("10.0.0.1", 5.0) == BUSY  # its own cap, as for any login
    for _ in range(3):
        t.release("10.0.0.1")
    # Another address is untouched.
    assert t.admit("10.0.0.2", 5.0) is None
    t.succeeded("10.0.0.2", 5.0)
    # The ban ends after ban_time; failures start from the first delay again.
    assert t.admit("10.0.0.1", 4.0 + 60.0 + 0.01) is None
    assert t.failed("10.0.0.1", 65.0) == 0.1


def test_failures_are_forgotten_after_a_quiet_window_but_not_by_a_success() -> None:
    t = LoginThrottle(RULES)
    assert [fail(t, "a", float(i)) for i in range(3)] == [0.1, 0.2, 0.4]
    assert t.admit("a", 3.0) is None
    t.succeeded("a", 3.0)
    assert fail(t, "a", 4.0) == 0.8  # a success does not reset the penalty
    assert fail(t, "a", 4.0 + 61.0) == 0.1  # a quiet window does


def test_logins_in_progress_are_capped_per_address_and_in_all() -> None:
    stats = Stats()
    t = LoginThrottle(RULES, stats)
    for _ in range(3):
        assert t.admit("a", 0.0) is None
    assert t.admit("a", 0.0) == BUSY
    assert stats.logins_in_progress == 3
    for i in range(7):
        assert t.admit(f"b{i}", 0.0) is None
    assert t.admit("c", 0.0) == BUSY  # the global cap (10)
    assert stats.logins_refused_busy == 2
    t.release("a")
    assert t.admit("c", 0.0) is None
    t.release("unknown")  # harmless
    t.release("a")
    t.release("a")
    t.release("a")  # one more release than admits: ignored
    assert t.in_progress == 8


def test_never_ban_when_ban_after_is_zero() -> None:
    t = LoginThrottle(ThrottleRules(delay=0.0, delay_max=0.0, ban_after=0))
    for i in range(100):
        assert fail(t, "a", float(i)) == 0.0
    assert not t.banned("a", 100.0)


def test_memory_is_bounded() -> None:
    t = LoginThrottle(RULES, max_addresses=100)
    for i in range(1000):
        fail(t, f"addr-{i}", float(i) * 0.001)
    assert len(t) <= 100


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.sampled_from(["ok", "fail", "gone"]), st.floats(0, 5)),
        max_size=60,
    )
)
def test_slots_always_balance(events: list[tuple[str, str, float]]) -> None:
    """Whatever happens, every admitted login gives its slot back exactly once."""
    t = LoginThrottle(RULES)
    now = 0.0
    for addr, outcome, step in events:
        now += step
        verdict = t.admit(addr, now)
        if verdict == BANNED:
            t.release(addr)
        if verdict is not None:
            assert t.in_progress == 0
            continue
        if outcome == "ok":
            t.succeeded(addr, now)
        elif outcome == "fail":
            assert 0 < t.failed(addr, now) <= RULES.delay_max
            t.release(addr)
        else:
            t.release(addr)
        assert t.in_progress == 0
