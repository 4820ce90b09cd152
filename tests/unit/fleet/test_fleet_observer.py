"""The observer's pure step: attributing sessions to containers and finding zombies."""

from __future__ import annotations

from fleetpool.fleet.emulator import ContainerView
from fleetpool.fleet.observer import Session, attribute, sample
from fleetpool.fleet.scheduler import State


def test_attribution_by_application_name_then_reported_ids() -> None:
    sessions = [
        Session(1, "fleet:naive:c001", "idle", "fleet"),
        Session(2, "", "idle", "fleet"),
        Session(3, "psql", "active", "admin"),
    ]
    views = {
        "c001": ContainerView(State.FROZEN, 0.0, 10),
        "c002": ContainerView(State.DEAD, 0.0, 11, sessions=[2]),
    }
    assert attribute(sessions, views, "fleet:naive") == {1: "c001", 2: "c002"}


def test_zombies_are_sessions_of_dead_or_long_frozen_containers() -> None:
    sessions = [
        Session(1, "fleet:g:c1", "idle", "u"),  # frozen 5 s: zombie (ttl 3)
        Session(2, "fleet:g:c2", "idle", "u"),  # frozen 1 s: not yet
        Session(3, "fleet:g:c3", "idle", "u"),  # dead: zombie
        Session(4, "fleet:g:c4", "active", "u"),  # running
        Session(5, "other", "idle", "u"),
    ]
    views = {
        "c1": ContainerView(State.FROZEN, 5.0, 1),
        "c2": ContainerView(State.FROZEN, 9.0, 2),
        "c3": ContainerView(State.DEAD, 9.5, 3),
        "c4": ContainerView(State.RUNNING, 9.0, 4),
    }
    row = sample(10.0, sessions, views, app_prefix="fleet:g", limit=10, zombie_after=3.0, now=10.0)
    assert row["zombies"] == 2
    assert row["server"]["owners"] == {"running": 1, "frozen": 1, "zombie": 2, "other": 1}
    assert row["server"]["total"] == 5
    assert row["remaining"] == 5
    assert row["containers"]["dead"] == 1
