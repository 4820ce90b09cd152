"""The platform's pure decisions: warm, cold or throttle; what to reclaim; what is a zombie."""

from __future__ import annotations

from fleetpool.fleet.scheduler import FleetState, State, assign, expired, is_zombie, transition


def fleet(concurrency: int = 2, idle: float = 5.0) -> FleetState:
    return FleetState(concurrency, idle)


def test_cold_start_when_no_container() -> None:
    assert assign(fleet(), 0.0).kind == "cold"


def test_warm_reuse_prefers_most_recently_used() -> None:
    st = fleet()
    transition(st, "a", State.STARTING, 0.0)
    transition(st, "a", State.FROZEN, 1.0)
    transition(st, "b", State.STARTING, 0.0)
    transition(st, "b", State.FROZEN, 2.0)
    got = assign(st, 3.0)
    assert (got.kind, got.container) == ("warm", "b")


def test_busy_containers_are_never_assigned() -> None:
    st = fleet(concurrency=5)
    transition(st, "a", State.STARTING, 0.0)
    transition(st, "a", State.RUNNING, 0.1)
    assert assign(st, 1.0).kind == "cold"


def test_throttle_at_concurrency_limit() -> None:
    st = fleet(concurrency=2)
    transition(st, "a", State.STARTING, 0.0)
    transition(st, "b", State.STARTING, 0.0)
    transition(st, "b", State.RUNNING, 0.2)
    assert assign(st, 1.0).kind == "throttle"
    transition(st, "b", State.FROZEN, 1.5)
    assert assign(st, 2.0).kind == "warm"  # a frozen one is free even at the limit


def test_expired_lists_idle_past_lifetime_oldest_first() -> None:
    st = fleet(idle=5.0)
    for cid, t in (("a", 1.0), ("b", 0.5), ("c", 4.0)):
        transition(st, cid, State.STARTING, 0.0)
        transition(st, cid, State.FROZEN, t)
    transition(st, "d", State.STARTING, 0.0)  # busy: never reclaimed
    assert expired(st, 6.0) == ["b", "a"]
    assert expired(st, 4.9) == []


def test_dead_is_final_and_counts() -> None:
    st = fleet()
    transition(st, "a", State.STARTING, 0.0)
    transition(st, "a", State.DEAD, 1.0)
    transition(st, "a", State.FROZEN, 2.0)
    assert st.slots["a"].state is State.DEAD
    assert st.counts()["dead"] == 1
    assert st.busy() == 0


def test_running_counts_invocations() -> None:
    st = fleet()
    transition(st, "a", State.STARTING, 0.0)
    for t in (0.1, 1.0, 2.0):
        transition(st, "a", State.RUNNING, t)
        transition(st, "a", State.FROZEN, t + 0.5)
    assert st.slots["a"].invocations == 3


def test_zombie_rules() -> None:
    assert is_zombie(State.DEAD, 0.0, 3.0)
    assert is_zombie(State.FROZEN, 3.0, 3.0)
    assert not is_zombie(State.FROZEN, 2.9, 3.0)
    assert not is_zombie(State.RUNNING, 100.0, 3.0)
    assert not is_zombie(None, 100.0, 3.0)
