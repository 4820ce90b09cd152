"""Calibration: the demo's spike by real processes and by the simulator agree.

The real run is ``fleetpool demo``'s scenario on an embedded PostgreSQL (every
strategy that needs no extra service, plus the proxy); the simulated one is the
same scenario on the virtual clock with :func:`fleetpool.fleet.scenario.host_costs`.
Each strategy's success rate, peak sessions, zombies at the end and p50 latency
must agree within :mod:`fleetpool.fleet.calibration`'s tolerances, except the
gaps listed in ``KNOWN_GAPS`` (reported, with the figures, not asserted). On a
host already loaded beyond six runnable processes per core it is skipped.
"""

from __future__ import annotations

import os

import pytest

from fleetpool.fleet.calibration import compare, markdown
from fleetpool.fleet.run import run_scenario
from fleetpool.fleet.scenario import DEFAULT_STRATEGIES, demo_scenario
from fleetpool.fleet.simulator import simulate_scenario

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# Strategies whose outcome during the spike depends on how fast ~70 processes
# start and import a driver on the host's shared cores: two real runs of this
# scenario on the same 2-core machine gave naive 54% and 76% success, counter
# 38% and 45%, zombie-killer 47% and 34% -- more than the tolerance -- so one real
# run cannot hold the model to it. Their figures are in the table, not asserted.
CONTENTION_BOUND = ("naive", "counter", "zombie-killer")

#: (strategy, metric) the model does not reproduce yet, and why.
KNOWN_GAPS = {
    **{(s, m): "host CPU contention" for s in CONTENTION_BOUND for m in ("success_pct", "p50_ms")},
    ("zombie-killer", "zombies_end"): "which sessions it kills depends on the timing above",
    ("proxy", "p50_ms"): "the proxy's own CPU on the same cores is not modelled",
    # How many transactions overlap at the proxy -- so how many server connections it
    # opens -- depends on when ~70 container processes get the CPU: real runs of this
    # scenario on one 2-core machine in one day peaked at 3, 3, 4 and 8 (the model: 2).
    # The bound that matters, peak <= the pool, is asserted by test_fleet_proxy_strategy.
    ("proxy", "peak_sessions"): "overlap of transactions at the proxy varies with scheduling",
    # Queueing time through 10 leases is the sum of every hand-over's store calls,
    # wake-up and connect, each slowed by the host's load: four real runs here gave
    # p50s of 3.5, 3.6, 4.0 and 5.9 s (the model: 3.6 s).
    ("fleetpool", "p50_ms"): "hand-over cost under host load varies beyond the tolerance",
}


#: Above this 1-minute load average per core the real run measures the machine (other
#: jobs' processes starve the containers: one such run on this 2-core machine had
#: fleetpool at 15% success with a p50 of 32 s), so there is nothing to calibrate against.
MAX_LOAD_PER_CPU = 6.0


def test_simulator_reproduces_the_demo_spike() -> None:
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    if load > MAX_LOAD_PER_CPU:
        pytest.skip(f"host load {load:.1f} per CPU: real processes cannot be timed fairly")
    scenario = demo_scenario(10, 12.0, strategies=(*DEFAULT_STRATEGIES, "proxy"))
    real = run_scenario(scenario)
    simulated = simulate_scenario(scenario)
    rows = compare(real, simulated)
    assert {r.strategy for r in rows} == set(scenario.strategies)
    table = markdown(rows)
    misses = [r for r in rows if not r.ok and (r.strategy, r.metric) not in KNOWN_GAPS]
    print(table)  # shown with -s, and in the failure's captured output
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    assert not misses, f"simulator and demo disagree (load now {load:.1f} per CPU):\n{table}"
