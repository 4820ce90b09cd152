"""The virtual-clock simulator: deterministic, and the budget's guarantees hold in it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fleetpool.budget._policy import BudgetConfig
from fleetpool.errors import ConfigError
from fleetpool.fleet.plan import Target, outcome, plan
from fleetpool.fleet.scenario import Scenario, demo_scenario, parse_scenario
from fleetpool.fleet.simulator import MODELS, Kernel, Sim, SimBudget, simulate_scenario
from fleetpool.fleet.strategies import REGISTRY
from fleetpool.fleet.traffic import Phase, Workload, iter_schedule, schedule

ALL = tuple(REGISTRY)


def spike(**kw: object) -> Scenario:
    return replace(demo_scenario(10, 12.0, strategies=ALL), **kw)  # type: ignore[arg-type]


def test_every_registered_strategy_has_a_model() -> None:
    assert set(MODELS) == set(REGISTRY)


def test_same_seed_same_report_other_seed_other_report() -> None:
    a = simulate_scenario(spike())
    b = simulate_scenario(spike())
    c = simulate_scenario(spike(seed=2))
    for run in (a, b, c):
        run.pop("wall_seconds")
        for r in run["strategies"]:
            r.pop("wall_seconds")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert json.dumps(a, sort_keys=True) != json.dumps(c, sort_keys=True)


def test_streamed_schedule_is_the_listed_one() -> None:
    phases = [
        Phase("steady", 3.0, rate=20.0, payload={"k": 1}),
        Phase("harness", 1.0, iterations=30, spread=2.0),  # overlaps the next phase
        Phase("spike", 4.0, base_rate=5.0, peak_rate=80.0, peak_at=1.0, peak_length=0.5),
    ]
    wl = Workload(think=0.1, slow_fraction=0.3, slow_think=9.0)
    listed = schedule(phases, wl, seed=5)
    streamed = list(iter_schedule(phases, wl, seed=5))
    assert [(a.index, a.at, dict(a.event), a.slow) for a in listed] == [
        (a.index, a.at, dict(a.event), a.slow) for a in streamed
    ]


@pytest.mark.parametrize("lease_ttl", [0.5, 3.0])
def test_live_leases_never_exceed_the_limit(lease_ttl: float) -> None:
    # check=True makes the simulated store assert it at every grant.
    sc = spike(lease_ttl=lease_ttl, strategies=("fleetpool",))
    sim = Sim(sc, "fleetpool", check=True)
    _records, samples = sim.run()
    assert sim.budget is not None and 0 < sim.budget.peak_live <= sim.limit
    assert all(s["budget"]["in_use"] <= sim.limit for s in samples)
    assert max(s["server"]["total"] for s in samples) <= sc.max_connections
    assert any(s["budget"]["waiting"] for s in samples)  # the spike did contend


def test_an_expired_lease_never_counts() -> None:
    sim = Sim(spike(strategies=("fleetpool",)), "fleetpool")
    budget = SimBudget(sim, BudgetConfig(2))
    k: Kernel = sim.k
    assert budget.try_acquire("f", 1.0) is not None
    assert budget.try_acquire("f", 5.0) is not None
    assert budget.try_acquire("f", 1.0) is None  # full
    k.now = 1.0  # the first lease expires exactly now
    assert budget.live() == 1
    assert budget.try_acquire("f", 1.0) is not None


def test_fleetpool_leaves_no_zombies_and_naive_does() -> None:
    run = simulate_scenario(spike(strategies=("naive", "global", "fleetpool", "proxy")))
    by = {r["strategy"]: r["summary"] for r in run["strategies"]}
    assert by["global"]["zombies_end"] > 0
    assert by["fleetpool"]["zombies_end"] == 0 and by["proxy"]["zombies_end"] == 0
    assert by["fleetpool"]["failed"] == 0
    assert by["naive"]["no_connections_left"] > 0


def test_a_custom_handler_cannot_be_simulated() -> None:
    with pytest.raises(ConfigError, match=r"custom .*handler cannot run on the virtual clock"):
        simulate_scenario(spike(handler="my.mod:handler"))


def test_model_table_is_read_and_checked() -> None:
    base = '[[traffic]]\nkind = "steady"\nrate = 1.0\nduration = 1.0\n'
    sc = parse_scenario("[model]\nconnect = 0.02\ncold_start_slots = 2\n" + base)
    assert sc.costs.connect == 0.02 and sc.costs.cold_start_slots == 2
    with pytest.raises(
        ConfigError, match=r"\[model\] key 'conect': unknown key; known: cold_start"
    ):
        parse_scenario("[model]\nconect = 1\n" + base)


def test_plan_recommends_a_limit_that_meets_its_target_when_replayed() -> None:
    sc = replace(spike(strategies=("fleetpool",)), max_connections=12, limit=None)
    target = Target(success=0.95)
    result = plan(sc, "fleetpool", target, ttls=(1.0, 3.0))
    rec = result["recommended"]
    assert rec is not None
    replayed = outcome(
        replace(sc, limit=rec["limit"], lease_ttl=rec["lease_ttl"]), "fleetpool", rec["limit"]
    )
    assert replayed.meets(target)
    assert rec["limit"] <= 12 and rec["headroom"] == 12 - rec["peak_sessions"]
    # Every point tried is on the frontier, and none below the recommendation meets
    # the target with the same TTL (bisection found the smallest).
    same = [p for p in result["frontier"] if p["lease_ttl"] == rec["lease_ttl"]]
    assert all(p["success"] < 0.95 for p in same if p["limit"] < rec["limit"])


def test_plan_says_when_nothing_meets_the_target() -> None:
    sc = replace(spike(strategies=("fleetpool",)), max_connections=2)
    result = plan(sc, "fleetpool", Target(success=1.0, p99_ms=1.0), ttls=(3.0,))
    assert result["recommended"] is None and result["frontier"]
    with pytest.raises(ConfigError, match="plan tunes fleetpool, proxy; got strategy 'naive'"):
        plan(sc, "naive")
