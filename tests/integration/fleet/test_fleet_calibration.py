"""Calibration: the demo's spike by real processes and by the simulator agree.

The real run is ``fleetpool demo``'s scenario on an embedded PostgreSQL (every
strategy that needs no extra service, plus the proxy); the simulated one is the
same scenario on the virtual clock with :func:`fleetpool.fleet.scenario.host_costs`.
Each strategy's success rate, peak sessions, zombies at the end and p50 latency
must agree within :mod:`fleetpool.fleet.calibration`'s tolerances, except the
gaps listed in ``KNOWN_GAPS`` (reported, with the figures, not asserted).
"""

from __future__ import annotations

import pytest

from fleetpool.fleet.calibration import compare, markdown
from fleetpool.fleet.run import run_scenario
from fleetpool.fleet.scenario import DEFAULT_STRATEGIES, demo_scenario
from fleetpool.fleet.simulator import simulate_scenario

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

#: (strategy, metric) the model does not reproduce yet, and why.
KNOWN_GAPS = {
    # The demo's successful naive invocations are mostly late cold starts: ~70
    # processes spawning and importing psycopg on 2 shared cores take seconds;
    # the model's host queue gives the right success rate but not that delay.
    ("naive", "p50_ms"): "host CPU contention during the spike is not modelled",
    ("proxy", "p50_ms"): "the proxy's own CPU on the same cores is not modelled",
    ("proxy", "peak_sessions"): "the real proxy opens a few more sessions than it needs",
}


def test_simulator_reproduces_the_demo_spike() -> None:
    scenario = demo_scenario(10, 12.0, strategies=(*DEFAULT_STRATEGIES, "proxy"))
    real = run_scenario(scenario)
    simulated = simulate_scenario(scenario)
    rows = compare(real, simulated)
    assert {r.strategy for r in rows} == set(scenario.strategies)
    table = markdown(rows)
    misses = [r for r in rows if not r.ok and (r.strategy, r.metric) not in KNOWN_GAPS]
    print(table)  # shown with -s, and in the failure's captured output
    assert not misses, f"simulator and demo disagree:\n{table}"
