"""The virtual-clock simulator at internet scale, and its calibration against the demo.

Usage::

    python -m benchmarks.simulate               # internet.toml: wall, CPU, peak RSS
    python -m benchmarks.simulate --calibrate   # also the demo's spike, real vs simulated

The run is ``src/fleetpool/fleet/scenarios/internet.toml`` (100,000 containers, ten
simulated minutes, ~20,000 invocations in flight at each spike) as ``fleetpool
simulate --virtual`` runs it, in this process: wall and CPU seconds, and the
process's peak resident memory. The peer, measured in the same run, is the real
emulator (``fleetpool demo``'s spike for the fleetpool strategy, real processes
and an embedded PostgreSQL): containers handled per wall second, real vs virtual.
With ``--calibrate`` every demo strategy runs both ways and the table the README
quotes is printed (tolerances: :mod:`fleetpool.fleet.calibration`).

The machine may be loaded (2 shared cores): CPU seconds disturb less than wall.
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import time
from pathlib import Path
from typing import Any

from benchmarks._results import save
from fleetpool.fleet.calibration import compare, markdown
from fleetpool.fleet.report import write_report
from fleetpool.fleet.run import run_scenario
from fleetpool.fleet.scenario import DEFAULT_STRATEGIES, demo_scenario, load_scenario
from fleetpool.fleet.simulator import simulate_scenario

INTERNET = Path(__file__).resolve().parents[1] / "src/fleetpool/fleet/scenarios/internet.toml"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calibrate", action="store_true", help="also run the calibration table")
    ap.add_argument("--out", type=Path, help="write the internet run's HTML report here")
    args = ap.parse_args()
    started = datetime.datetime.now(datetime.UTC)
    figures: dict[str, Any] = {}

    scenario = load_scenario(INTERNET)
    t0, c0 = time.monotonic(), _cpu()
    run = simulate_scenario(scenario)
    wall, cpu = time.monotonic() - t0, _cpu() - c0
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.out:
        write_report(run, args.out, None)
    per = {
        r["strategy"]: {
            "invocations": r["summary"]["invocations"],
            "containers": r["virtual"]["containers"],
            "peak_in_flight": max(r["series"]["running"] or [0]),
            "wall_seconds": r["wall_seconds"],
            "success_pct": round(
                100.0
                * r["summary"]["succeeded"]
                / max(1, r["summary"]["invocations"] - r["summary"]["injected_kills"]),
                2,
            ),
            "peak_sessions": r["summary"]["peak_server_connections"],
            "p99_ms": r["summary"]["latency_ms"]["p99"],
        }
        for r in run["strategies"]
    }
    containers = sum(p["containers"] for p in per.values())
    figures["internet"] = {
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "peak_rss_mib": round(peak_rss_mib),
        "strategies": per,
    }
    print(f"internet.toml on the virtual clock: {wall:.1f} s wall, {cpu:.1f} s CPU, "
          f"peak RSS {peak_rss_mib:.0f} MiB")  # fmt: skip
    for name, p in per.items():
        print(f"  {name:10} {p['invocations']} invocations, {p['containers']} containers, "
              f"peak {p['peak_in_flight']} in flight, {p['success_pct']}% ok, "
              f"peak {p['peak_sessions']} sessions, {p['wall_seconds']} s")  # fmt: skip

    # The peer: the real emulator on the demo's spike, same strategy, same machine.
    spike = demo_scenario(10, 12.0, strategies=(*DEFAULT_STRATEGIES, "proxy"))
    if not args.calibrate:
        from dataclasses import replace

        spike = replace(spike, strategies=("fleetpool",))
    t0 = time.monotonic()
    real = run_scenario(spike)
    real_wall = time.monotonic() - t0
    real_containers = sum(r["summary"]["containers"] for r in real["strategies"])
    virtual_rate = containers / wall
    real_rate = real_containers / real_wall
    figures["peer_real_demo"] = {
        "strategies": list(spike.strategies),
        "wall_seconds": round(real_wall, 1),
        "containers": real_containers,
        "containers_per_second": round(real_rate, 2),
    }
    figures["virtual_containers_per_second"] = round(virtual_rate, 1)
    figures["ratio_virtual_to_real"] = round(virtual_rate / real_rate, 1)
    print(f"peer: the real demo handled {real_containers} containers in {real_wall:.1f} s "
          f"({real_rate:.1f}/s); virtual {virtual_rate:.0f}/s: "
          f"{virtual_rate / real_rate:.0f}x")  # fmt: skip
    if args.calibrate:
        rows = compare(real, simulate_scenario(spike))
        figures["calibration"] = [r.as_dict() for r in rows]
        print(markdown(rows))
        print(f"load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"results: {save('simulate', figures, started)}")


if __name__ == "__main__":
    main()
