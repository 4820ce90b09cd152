"""Cold start: ``import fleetpool`` + ``Database(...)`` in a fresh interpreter.

Usage::

    python benchmarks/cold_start.py              # 21 fresh interpreters per case
    python benchmarks/cold_start.py --runs 51 --json
    python benchmarks/cold_start.py --importtime # also the top of python -X importtime

What a Lambda pays in its global section before the first invocation. Each case
runs in its own new interpreter (``-I``: no user site, no PYTHON* variables),
timed inside it (interpreter start-up excluded: the runtime pays it whatever the
function does) by the process's CPU time, which a loaded machine disturbs far
less than the wall clock (both are printed; on Lambda the global section has its
CPU to itself, so CPU time is the closer figure). Cases:

* **fleetpool**: ``import fleetpool`` + ``Database(postgresql URL, budget=dynamodb URL,
  secret=ARN)`` -- the SAM example's global section. Target <= 30 ms; boto3 and
  psycopg must not be imported yet (``Database`` opens the budget, fetches the
  secret and loads the driver at the first connection).
* **stdlib**: only the standard-library modules the first case loads (typing,
  dataclasses, logging, re, socket, urllib.parse, json...), for the share that is
  not fleetpool's own code.
* **fleetpool + first use's imports**: the same, then importing what the first
  invocation loads (psycopg, boto3): the import cost moved out of the global
  section, for scale.
* **peer: sample-style global section**: ``import boto3, psycopg`` -- a function
  in the AWS sample's style imports the SDK (to invoke its helper) and the driver
  at load time.

The machine may be loaded (2 shared cores): figures are medians of many runs,
with the peer measured in the same run; compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

SETUP = {
    "FLEETPOOL_METRICS_NAMESPACE": "fleetpool",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}

FLEETPOOL = r"""
import sys, time
t0, c0 = time.perf_counter(), time.process_time()
import fleetpool
db = fleetpool.Database(
    "postgresql://app@db.internal:5432/orders",
    budget="dynamodb://fleetpool-budgets?create=false",
    budget_name="orders-db",
    secret="arn:aws:secretsmanager:us-east-1:123456789012:secret:orders-db",
    handle_signals=False,
)
EXTRA
t2, c2 = time.perf_counter(), time.process_time()
print((c2 - c0) * 1000, (t2 - t0) * 1000, "boto3" in BEFORE, "psycopg" in BEFORE)
"""

#: The standard-library modules ``import fleetpool`` + ``Database()`` load (fleetpool's
#: code needs them; a Lambda runtime may have loaded some already).
STDLIB = r"""
import time
t0, c0 = time.perf_counter(), time.process_time()
import typing, dataclasses, re, logging, urllib.parse, socket, random, threading, json, abc
import collections.abc, enum, functools, contextlib, signal, atexit, importlib.util, math, bisect
t1, c1 = time.perf_counter(), time.process_time()
print((c1 - c0) * 1000, (t1 - t0) * 1000, False, False)
"""

PEER = r"""
import time
t0, c0 = time.perf_counter(), time.process_time()
import boto3, psycopg
t1, c1 = time.perf_counter(), time.process_time()
print((c1 - c0) * 1000, (t1 - t0) * 1000, True, True)
"""


def script(case: str) -> str:
    if case == "peer":
        return PEER
    if case == "stdlib":
        return STDLIB
    extra = "import psycopg, boto3" if case == "fleetpool+first-use" else "pass"
    body = FLEETPOOL.replace("EXTRA", f"BEFORE = set(sys.modules)\n{extra}")
    return body


def run(case: str) -> tuple[float, float, bool, bool]:
    env = {"PATH": os.environ.get("PATH", ""), **SETUP}
    done = subprocess.run(
        [sys.executable, "-I", "-c", script(case)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    a, b, boto, psy = done.stdout.split()
    return float(a), float(b), boto == "True", psy == "True"


def importtime(top: int = 12) -> list[tuple[int, str]]:
    """The slowest modules (cumulative microseconds) under python -X importtime."""
    env = {"PATH": os.environ.get("PATH", ""), **SETUP}
    done = subprocess.run(
        [sys.executable, "-I", "-X", "importtime", "-c", script("fleetpool")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), m.group(3).count(" ") // 2 * "  " + m.group(4)))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--importtime", action="store_true")
    args = parser.parse_args()
    if args.runs < 1 or args.runs > 1000:
        parser.error("--runs must be between 1 and 1000")

    results: dict[str, dict[str, float | bool]] = {}
    cases = ("fleetpool", "stdlib", "fleetpool+first-use", "peer")
    samples: dict[str, list[tuple[float, float, bool, bool]]] = {c: [] for c in cases}
    for _ in range(args.runs):  # interleaved, so load on the machine hits every case alike
        for case in cases:
            samples[case].append(run(case))
    for case in cases:
        cpu = [s[0] for s in samples[case]]
        wall = [s[1] for s in samples[case]]
        results[case] = {
            "cpu_median_ms": round(statistics.median(cpu), 2),
            "cpu_min_ms": round(min(cpu), 2),
            "wall_median_ms": round(statistics.median(wall), 2),
            "boto3_imported": any(s[2] for s in samples[case]),
            "psycopg_imported": any(s[3] for s in samples[case]),
        }
    ratio = results["peer"]["cpu_median_ms"] / results["fleetpool"]["cpu_median_ms"]  # type: ignore[operator]
    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "runs": args.runs,
                          "cases": results, "peer_over_fleetpool": round(ratio, 2)}))  # fmt: skip
        return
    print(f"Python {sys.version.split()[0]}, {args.runs} fresh interpreters per case")
    print(f"  {'':<38} {'CPU median':>10}  {'CPU min':>7}  {'wall median':>11}")
    labels = {
        "fleetpool": "import fleetpool + Database(...)",
        "stdlib": "  of which: the stdlib modules it loads",
        "fleetpool+first-use": "  ... + psycopg, boto3 (first use)",
        "peer": "peer: import boto3, psycopg",
    }
    for case in cases:
        r = results[case]
        print(
            f"  {labels[case]:<38} {r['cpu_median_ms']:>7.1f} ms  {r['cpu_min_ms']:>7.1f}"
            f"  {r['wall_median_ms']:>8.1f} ms"
        )
    fp = results["fleetpool"]
    print(f"  boto3 imported by the global section: {fp['boto3_imported']}; "
          f"psycopg: {fp['psycopg_imported']}")  # fmt: skip
    print(f"  peer / fleetpool (CPU medians): {ratio:.1f}x   (target: fleetpool <= 30 ms)")
    if args.importtime:
        print("\nslowest imports of the fleetpool case (cumulative, python -X importtime):")
        for us, name in importtime():
            print(f"  {us / 1000:>7.2f} ms  {name}")


if __name__ == "__main__":
    main()
