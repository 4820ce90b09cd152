"""Which container serves an invocation, and which containers the platform reclaims.

Strategy: the decisions are pure functions of a small state table and ``now``,
so they are tested without processes or clocks. The emulator holds a lock,
asks, applies the answer to real processes, and records the transition here.

The rules follow the serverless container model:

* one invocation at a time per container;
* a free warm (frozen) container is reused -- the most recently used one, so
  the fleet stays small under light load and old containers age out;
* otherwise a cold start, unless running + starting containers already reach the
  concurrency limit, in which case the invocation is throttled;
* a container idle longer than its idle lifetime is reclaimed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal


class State(StrEnum):
    STARTING = "starting"  # process spawned, global section running
    RUNNING = "running"  # serving an invocation (thawed)
    FROZEN = "frozen"  # idle between invocations (SIGSTOP)
    DEAD = "dead"  # killed, crashed or reclaimed


@dataclass
class Slot:
    id: str
    state: State
    since: float  # when it entered ``state``
    created: float
    invocations: int = 0


@dataclass(frozen=True)
class Assignment:
    kind: Literal["warm", "cold", "throttle"]
    container: str | None = None


@dataclass
class FleetState:
    concurrency: int
    idle_lifetime: float
    slots: dict[str, Slot] = field(default_factory=dict)

    def busy(self) -> int:
        return sum(1 for s in self.slots.values() if s.state in (State.STARTING, State.RUNNING))

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in State}
        for slot in self.slots.values():
            out[slot.state.value] += 1
        return out


def assign(state: FleetState, now: float) -> Assignment:
    """Choose a warm container, a cold start or a throttle for an invocation arriving at ``now``."""
    frozen = [s for s in state.slots.values() if s.state is State.FROZEN]
    if frozen:
        best = max(frozen, key=lambda s: (s.since, s.id))
        return Assignment("warm", best.id)
    if state.busy() >= state.concurrency:
        return Assignment("throttle")
    return Assignment("cold")


def expired(state: FleetState, now: float) -> list[str]:
    """Frozen containers whose idle time has reached the idle lifetime, oldest first."""
    old = [
        s
        for s in state.slots.values()
        if s.state is State.FROZEN and now - s.since >= state.idle_lifetime
    ]
    return [s.id for s in sorted(old, key=lambda s: (s.since, s.id))]


def transition(state: FleetState, container: str, to: State, now: float) -> None:
    """Record a state change (creating the slot on its first ``STARTING``)."""
    slot = state.slots.get(container)
    if slot is None:
        state.slots[container] = Slot(container, to, now, now)
        return
    if slot.state is State.DEAD:
        return  # dead is final
    if to is State.RUNNING:
        slot.invocations += 1
    slot.state = to
    slot.since = now


def is_zombie(container_state: State | None, frozen_for: float, zombie_after: float) -> bool:
    """A server session is a zombie when its container is dead, or frozen past ``zombie_after``."""
    if container_state is State.DEAD:
        return True
    return container_state is State.FROZEN and frozen_for >= zombie_after
