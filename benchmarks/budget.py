"""Budget backends: acquire+release throughput and acquire latency.

Usage::

    python -m benchmarks.budget                      # memory, sqlite, redis (throwaway server)
    python -m benchmarks.budget --redis-url redis://host:6379/0 --dynamodb --json
    python -m benchmarks.budget --backends redis --duration 5

(from the repository root). Each run's figures are also written to
``benchmarks/results/budget-<time>-<pid>.json``.

For each backend: acquire+release pairs per second from 1 process and from N
processes (default 8; multiprocessing, a fixed duration each), and p50/p99 of
``acquire`` as users call it (through :class:`fleetpool.Budget`, metrics
included). For Redis the PING p50 of the same server, measured in the same run
with the same client settings, is the floor: one round trip. Targets:

* Redis: acquire p50 <= 1.5 x PING p50, and >= 5,000 pairs/s from one process.
* SQLite: >= 2,000 pairs/s from one process.

The memory backend is per process by design, so its N-process figure is N
independent budgets (shown for scale only).

CPU placement (see benchmarks/_placement.py): the one-process Redis figures move
with where the scheduler happens to put redis-server relative to the benchmark (a
cross-CPU wake-up costs more than fleetpool's whole acquire here). By default the
benchmark pins itself and the Redis it started to one CPU for the one-process
measurements (``--placement same``), then repeats them with the server on
another CPU and prints those too; the N-process runs use every CPU.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import fleetpool
from fleetpool_testing import MotoServer, RedisServer

from . import _results
from ._placement import PLACEMENTS, placed

LIMIT = 1000  # far above the processes' concurrency: the benchmark measures the store


@dataclass
class Run:
    pairs: int
    seconds: float
    latencies: list[float]
    refused: int = 0  # acquires given up (DynamoDB: write contention beyond its retries)


@dataclass
class Result:
    backend: str
    pairs_per_s_1: float
    acquire_p50_ms: float
    acquire_p99_ms: float
    pairs_per_s_n: float
    processes: int
    ping_p50_ms: float | None = None
    ratio_to_ping: float | None = None
    placement: str = ""
    cross: dict[str, float] | None = None  # one-process Redis figures, server on another CPU
    refused: int = 0
    targets: dict[str, bool] = field(default_factory=dict)


def _loop(url: str, name: str, seconds: float) -> Run:
    budget = fleetpool.open_budget(url, name, on_unavailable="fail_closed")
    if url.startswith("memory:"):
        budget.configure(limit=LIMIT)  # each process has its own memory budget
    for _ in range(50):  # warm up: connect, load scripts, create tables
        budget.release(budget.acquire(function="bench", ttl=30))
    latencies: list[float] = []
    pairs = refused = 0
    clock = time.perf_counter
    start = clock()
    stop = start + seconds
    while True:
        t0 = clock()
        if t0 >= stop:
            break
        try:
            lease = budget.acquire(function="bench", ttl=30)
        except fleetpool.NoConnectionsLeft:
            refused += 1
            continue
        t1 = clock()
        budget.release(lease)
        latencies.append(t1 - t0)
        pairs += 1
    elapsed = clock() - start
    budget.close()
    return Run(pairs, elapsed, latencies, refused)


def _worker(url: str, name: str, seconds: float, start_at: float, out: Any) -> None:
    time.sleep(max(0.0, start_at - time.time()))
    run = _loop(url, name, seconds)
    out.put((run.pairs, run.seconds, run.refused))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _many(url: str, name: str, seconds: float, processes: int) -> tuple[float, int]:
    """Pairs per second summed over ``processes`` processes, and their refusals."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 2.0  # let every interpreter start before the clock runs
    procs = [
        ctx.Process(target=_worker, args=(url, name, seconds, start_at, out))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    results = []
    deadline = time.monotonic() + seconds + 120
    while len(results) < len(procs):
        try:
            results.append(out.get(timeout=0.5))
        except queue.Empty:
            failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if failed or time.monotonic() > deadline:
                for p in procs:
                    p.kill()
                raise RuntimeError(f"benchmark workers failed: exit codes {failed}") from None
    for p in procs:
        p.join(30)
    return sum(pairs / secs for pairs, secs, _ in results), sum(r for _, _, r in results)


def _ping_p50(url: str, seconds: float = 1.0) -> float:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    for _ in range(100):
        client.ping()
    samples: list[float] = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        client.ping()
        samples.append(time.perf_counter() - t0)
    client.close()
    return statistics.median(samples)


def _one_process(kind: str, url: str, name: str, seconds: float) -> tuple[Run, float | None]:
    """The one-process loop and, for Redis, the PING floor (measured before and after)."""
    ping = _ping_p50(url) if kind == "redis" else None
    one = _loop(url, name, seconds)
    if ping is not None:
        ping = min(ping, _ping_p50(url))
    return one, ping


def bench(
    kind: str,
    url: str,
    seconds: float,
    processes: int,
    placement: str = "none",
    server_pids: list[int] | None = None,
) -> Result:
    name = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
    setup = fleetpool.open_budget(url, name, on_unavailable="fail_closed")
    setup.configure(limit=LIMIT)
    pids = server_pids or []
    with placed(placement, pids) as where:
        one, ping = _one_process(kind, url, name, seconds)
    cross = None
    if kind == "redis" and placement == "same" and pids:
        with placed("cross", pids):
            other, other_ping = _one_process(kind, url, name, seconds)
        assert other_ping is not None
        cross = {
            "pairs_per_s_1": other.pairs / other.seconds,
            "acquire_p50_ms": statistics.median(other.latencies) * 1000,
            "ping_p50_ms": other_ping * 1000,
            "ratio_to_ping": statistics.median(other.latencies) / other_ping,
        }
    many, refused = _many(url, name, seconds, processes) if processes > 1 else (0.0, 0)
    left = setup.snapshot()
    assert left.in_use == 0, left
    setup.close()
    p50 = statistics.median(one.latencies)
    result = Result(
        backend=kind,
        pairs_per_s_1=one.pairs / one.seconds,
        acquire_p50_ms=p50 * 1000,
        acquire_p99_ms=_percentile(one.latencies, 0.99) * 1000,
        pairs_per_s_n=many,
        processes=processes,
        placement=where if pids else "",
        refused=one.refused + refused,
        cross=cross,
    )
    if ping is not None:
        result.ping_p50_ms = ping * 1000
        result.ratio_to_ping = p50 / ping
        result.targets["acquire p50 <= 1.5x PING p50"] = result.ratio_to_ping <= 1.5
        result.targets[">= 5,000 pairs/s (1 process)"] = result.pairs_per_s_1 >= 5000
    if kind == "sqlite":
        result.targets[">= 2,000 pairs/s (1 process)"] = result.pairs_per_s_1 >= 2000
    return result


def _print_table(results: list[Result]) -> None:
    head = (
        f"{'backend':<9} {'pairs/s 1p':>11} {'pairs/s Np':>11} {'acq p50 ms':>11} "
        f"{'acq p99 ms':>11} {'PING p50 ms':>12} {'p50/PING':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        ping = f"{r.ping_p50_ms:.3f}" if r.ping_p50_ms is not None else "-"
        ratio = f"{r.ratio_to_ping:.2f}x" if r.ratio_to_ping is not None else "-"
        many = f"{r.pairs_per_s_n:,.0f}" if r.pairs_per_s_n else "-"
        print(
            f"{r.backend:<9} {r.pairs_per_s_1:>11,.0f} {many:>11} {r.acquire_p50_ms:>11.3f} "
            f"{r.acquire_p99_ms:>11.3f} {ping:>12} {ratio:>9}"
        )
    print(f"(Np = {results[0].processes} processes; memory's Np is that many separate budgets)")
    for r in results:
        if r.refused:
            print(f"{r.backend}: {r.refused:,} acquires refused (not counted as pairs)")
        if r.placement:
            print(f"{r.backend} one-process {r.placement}")
        if r.cross:
            c = r.cross
            print(
                f"{r.backend} with the server on another CPU: {c['pairs_per_s_1']:,.0f} pairs/s "
                f"1p, acquire p50 {c['acquire_p50_ms']:.3f} ms, PING p50 {c['ping_p50_ms']:.3f} "
                f"ms, {c['ratio_to_ping']:.2f}x"
            )
    print()
    print("targets:")
    for r in results:
        for label, ok in r.targets.items():
            print(f"  {'PASS' if ok else 'FAIL'}  {r.backend}: {label}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="memory,sqlite,redis")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--redis-url", help="use this Redis instead of a throwaway server")
    parser.add_argument("--dynamodb", action="store_true", help="also DynamoDB (moto server)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--placement",
        choices=PLACEMENTS,
        default="same",
        help="CPU placement of the benchmark and a started Redis (see the module docstring)",
    )
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.backends.split(",") if k.strip()]
    if args.dynamodb and "dynamodb" not in kinds:
        kinds.append("dynamodb")
    cleanups: list[Any] = []
    results: list[Result] = []
    started = _results.now()
    workdir = tempfile.mkdtemp(prefix="fp-bench-")
    try:
        for kind in kinds:
            pids: list[int] = []
            if kind == "memory":
                url = "memory://"
            elif kind == "sqlite":
                url = f"sqlite:///{workdir}/budget.db"
            elif kind == "redis":
                if args.redis_url:
                    url = args.redis_url
                else:
                    redis_server = RedisServer().start()
                    cleanups.append(redis_server.close)
                    url = redis_server.url
                    pids = [redis_server.pid] if redis_server.pid else []
            elif kind == "dynamodb":
                moto = MotoServer().start()
                cleanups.append(moto.stop)
                for key, value in MotoServer.env.items():
                    os.environ.setdefault(key, value)
                url = f"dynamodb://fp-bench?region={moto.region}&endpoint_url={moto.endpoint_url}"
            else:
                parser.error(f"unknown backend {kind!r}")
            if not args.json:
                print(f"measuring {kind} ...", file=sys.stderr, flush=True)
            results.append(bench(kind, url, args.duration, args.processes, args.placement, pids))
    finally:
        for cleanup in cleanups:
            cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    figures = [asdict(r) for r in results]
    path = _results.save("budget", figures, started)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        _print_table(results)
        print(f"\nresults: {path}")
    return 0 if all(ok for r in results for ok in r.targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
