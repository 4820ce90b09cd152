"""Cold start: ``import fleetpool`` + ``Database(...)`` in a fresh interpreter.

Usage::

    python -m benchmarks.cold_start              # 21 fresh interpreters per case
    python -m benchmarks.cold_start --runs 51 --json
    python -m benchmarks.cold_start --importtime # also the top of python -X importtime
    python -m benchmarks.cold_start --runtime-modules  # re-derive LAMBDA_RUNTIME_MODULES

What a Lambda pays in its global section before the first invocation. Each case
runs in its own new interpreter (``-I``: no user site, no PYTHON* variables),
timed inside it (interpreter start-up excluded: the runtime pays it whatever the
function does) by the process's CPU time, which a loaded machine disturbs far
less than the wall clock (both are printed; on Lambda the global section has its
CPU to itself, so CPU time is the closer figure). Cases:

* **fleetpool, on the Lambda runtime**: the SAM example's global section --
  ``import fleetpool`` + ``Database(postgresql URL, budget=dynamodb URL,
  secret=ARN)`` -- in an interpreter that has first imported what the Lambda
  Python runtime's bootstrap imports before it loads a function's module
  (:data:`LAMBDA_RUNTIME_MODULES`: logging, json, re, traceback...). This is the
  figure a function pays. Target <= 30 ms; boto3 and psycopg must not be
  imported yet (``Database`` opens the budget, fetches the secret and loads the
  driver at the first connection).
* **fleetpool, bare interpreter**: the same with nothing preloaded.
* **stdlib**: exactly the standard-library modules the bare case loaded (read
  from that case, in load order), for the share that is not fleetpool's own code.
* **fleetpool + first use's imports**: the bare case, then importing what the
  first invocation loads (psycopg, boto3): the import cost moved out of the
  global section, for scale.
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

from . import _results

SETUP = {
    "FLEETPOOL_METRICS_NAMESPACE": "fleetpool",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}

#: The standard-library modules the Lambda Python runtime has imported before it
#: imports a function's module: what ``import awslambdaric.bootstrap`` (4.2.2, the
#: runtime interface client the managed Python runtimes are built from) adds to
#: ``sys.modules``. ``--runtime-modules`` prints the list again where awslambdaric
#: is installed.
LAMBDA_RUNTIME_MODULES = [
    "atexit",
    "collections",
    "collections.abc",
    "contextlib",
    "copyreg",
    "decimal",
    "enum",
    "functools",
    "importlib",
    "importlib._bootstrap",
    "importlib._bootstrap_external",
    "itertools",
    "json",
    "json.decoder",
    "json.encoder",
    "json.scanner",
    "keyword",
    "linecache",
    "logging",
    "math",
    "numbers",
    "operator",
    "re",
    "re._casefix",
    "re._compiler",
    "re._constants",
    "re._parser",
    "reprlib",
    "string",
    "textwrap",
    "threading",
    "token",
    "tokenize",
    "traceback",
    "types",
    "warnings",
    "weakref",
]

#: The SAM example's global section (tests/unit/client/test_global_section_imports.py
#: checks what it imports).
GLOBAL_SECTION = """
import fleetpool
db = fleetpool.Database(
    "postgresql://app@db.internal:5432/orders",
    budget="dynamodb://fleetpool-budgets?create=false",
    budget_name="orders-db",
    secret="arn:aws:secretsmanager:us-east-1:123456789012:secret:orders-db",
    handle_signals=False,
)
"""

FLEETPOOL = (
    r"""
import sys, time
PRELOAD
BASE = set(sys.modules)
sys.stderr.write("-- preloaded --\n")  # where -X importtime's lines become fleetpool's
t0, c0 = time.perf_counter(), time.process_time()
"""
    + GLOBAL_SECTION
    + r"""
BEFORE = set(sys.modules)
EXTRA
t2, c2 = time.perf_counter(), time.process_time()
print((c2 - c0) * 1000, (t2 - t0) * 1000, "boto3" in BEFORE, "psycopg" in BEFORE)
if LIST:
    print(" ".join(m for m in sys.modules if m not in BASE and m.split(".")[0] != "fleetpool"))
"""
)

#: Times importing ``MODULES`` (the stdlib modules the bare fleetpool case loads).
STDLIB = r"""
import importlib, time
t0, c0 = time.perf_counter(), time.process_time()
for name in MODULES:
    importlib.import_module(name)
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

CASES = ("lambda", "fleetpool", "stdlib", "fleetpool+first-use", "peer")


def script(case: str, stdlib_modules: list[str] | None = None, listing: bool = False) -> str:
    if case == "peer":
        return PEER
    if case == "stdlib":
        names = [m for m in stdlib_modules or [] if not m.startswith("_")]
        return STDLIB.replace("MODULES", repr(names))
    preload = f"import {', '.join(LAMBDA_RUNTIME_MODULES)}" if case == "lambda" else ""
    extra = "import psycopg, boto3" if case == "fleetpool+first-use" else "pass"
    return (
        FLEETPOOL.replace("PRELOAD", preload).replace("EXTRA", extra).replace("LIST", str(listing))
    )


def _interpreter(code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), **SETUP}
    return subprocess.run(
        [sys.executable, "-I", *flags, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )


def stdlib_loaded() -> list[str]:
    """The non-fleetpool modules the bare case loads, in load order."""
    return _interpreter(script("fleetpool", listing=True)).stdout.splitlines()[1].split()


def run(case: str, stdlib_modules: list[str]) -> tuple[float, float, bool, bool]:
    a, b, boto, psy = _interpreter(script(case, stdlib_modules)).stdout.split()
    return float(a), float(b), boto == "True", psy == "True"


def runtime_modules() -> list[str]:
    """What ``import awslambdaric.bootstrap`` adds to sys.modules (stdlib, public names)."""
    code = (
        "import sys; before = set(sys.modules); import awslambdaric.bootstrap; "
        "print(' '.join(sorted(m for m in set(sys.modules) - before if not m.startswith('_') "
        "and m.split('.')[0] not in ('awslambdaric', 'runtime_client', 'simplejson'))))"
    )
    return _interpreter(code).stdout.split()


def importtime(top: int = 12) -> list[tuple[int, str]]:
    """The slowest modules (cumulative microseconds) under python -X importtime."""
    done = _interpreter(script("lambda"), "-X", "importtime")
    rows = []
    lines = done.stderr.splitlines()
    for line in lines[lines.index("-- preloaded --") + 1 :]:
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), m.group(3).count(" ") // 2 * "  " + m.group(4)))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--importtime", action="store_true")
    parser.add_argument("--runtime-modules", action="store_true")
    args = parser.parse_args()
    if args.runs < 1 or args.runs > 1000:
        parser.error("--runs must be between 1 and 1000")
    if args.runtime_modules:
        try:
            print(" ".join(runtime_modules()))
        except subprocess.CalledProcessError:
            parser.error("awslambdaric is not installed here (pip install awslambdaric)")
        return

    started = _results.now()
    stdlib_modules = stdlib_loaded()
    results: dict[str, dict[str, float | bool]] = {}
    samples: dict[str, list[tuple[float, float, bool, bool]]] = {c: [] for c in CASES}
    for _ in range(args.runs):  # interleaved, so load on the machine hits every case alike
        for case in CASES:
            samples[case].append(run(case, stdlib_modules))
    for case in CASES:
        cpu = [s[0] for s in samples[case]]
        wall = [s[1] for s in samples[case]]
        results[case] = {
            "cpu_median_ms": round(statistics.median(cpu), 2),
            "cpu_min_ms": round(min(cpu), 2),
            "wall_median_ms": round(statistics.median(wall), 2),
            "boto3_imported": any(s[2] for s in samples[case]),
            "psycopg_imported": any(s[3] for s in samples[case]),
        }
    ratio = results["peer"]["cpu_median_ms"] / results["lambda"]["cpu_median_ms"]  # type: ignore[operator]
    path = _results.save(
        "cold_start",
        {"runs": args.runs, "stdlib_modules": stdlib_modules, "cases": results},
        started,
    )
    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "runs": args.runs,
                          "stdlib_modules": stdlib_modules,
                          "cases": results, "peer_over_fleetpool": round(ratio, 2)}))  # fmt: skip
        return
    print(f"Python {sys.version.split()[0]}, {args.runs} fresh interpreters per case")
    print(f"  {'':<44} {'CPU median':>10}  {'CPU min':>7}  {'wall median':>11}")
    labels = {
        "lambda": "import fleetpool + Database(...), on Lambda",
        "fleetpool": "  the same in a bare interpreter",
        "stdlib": "    of which: the stdlib modules it loads",
        "fleetpool+first-use": "    ... + psycopg, boto3 (first use)",
        "peer": "peer: import boto3, psycopg (bare)",
    }
    for case in CASES:
        r = results[case]
        print(
            f"  {labels[case]:<44} {r['cpu_median_ms']:>7.1f} ms  {r['cpu_min_ms']:>7.1f}"
            f"  {r['wall_median_ms']:>8.1f} ms"
        )
    fp = results["lambda"]
    print(f"  boto3 imported by the global section: {fp['boto3_imported']}; "
          f"psycopg: {fp['psycopg_imported']}")  # fmt: skip
    print(
        f"  peer / fleetpool on Lambda (CPU medians): {ratio:.1f}x   (target: <= 30 ms on Lambda)"
    )
    print(f"  stdlib modules the bare case loads: {len(stdlib_modules)}")
    print(f"results: {path}")
    if args.importtime:
        print("\nslowest imports on Lambda (cumulative, python -X importtime):")
        for us, name in importtime():
            print(f"  {us / 1000:>7.2f} ms  {name}")


if __name__ == "__main__":
    main()
