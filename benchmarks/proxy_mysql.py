"""Benchmark: sysbench oltp_point_select through MariaDB directly and through the proxy.

Usage::

    .venv/bin/python -m benchmarks.proxy_mysql [--seconds 5] [--rounds 3] [--clients 20,200]
                                               [--workers 1] [--baseline REF]

Strategy: one throwaway MariaDB (max_connections=300) is started for the run, with one
10,000-row sysbench table. Each target gets sysbench ``oltp_point_select`` (one primary-key
SELECT per transaction, as a server-side prepared statement) at each thread count: MariaDB
directly (then with as many server threads as client threads), ``fleetpool proxy`` in
transaction mode with 20 server connections, and a bare uvloop relay (benchmarks._relay:
bytes forwarded unparsed, one upstream connection per client) as the floor: what two more
loopback hops cost any proxy written in Python on this machine, before any pooling work.
Targets run side by side and each figure is the median of several interleaved runs,
because background load on a shared machine drifts. Next to TPS, the proxy's CPU time per
transaction (user + system of its process tree, from /proc) is printed, with the system
share: it moves little with background load, so it is the figure to compare when changing
the hot path. Issue 11's targets are checked (at least 0.6x direct TPS at 20 threads, 0.8x
at 200) and ``oltp_read_write`` is run directly and through the proxy to show it runs
clean. ``--baseline REF`` adds the proxy of another revision (its ``src/`` from ``git
archive``) to the same interleaved rounds.
Nothing here asserts timings: it prints figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from fleetpool_testing import HOST, MariaDBServer, free_port
from fleetpool_testing.sysbench import SysbenchFailed, sysbench

from . import _results
from .proxy import POOL, checkout_src, fleetpool_proxy, process_tree_times, wait_port

PASSWORD = "bench-secret"
TABLE_SIZE = 10_000
TARGETS = {20: 0.6, 200: 0.8}  # issue 11: fraction of direct TPS at 20 / 200 threads
DIRECT = "mariadb direct"
FLOOR = "bare relay (floor)"


@contextlib.contextmanager
def bare_relay(upstream_port: int) -> Iterator[tuple[int, int]]:
    """Run benchmarks._relay in front of MariaDB; yields (port, pid)."""
    port = free_port()
    cmd = [sys.executable, "-m", "benchmarks._relay", str(port), str(upstream_port)]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1])
    try:
        wait_port(port)
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class Result:
    target: str
    threads: int
    tps: float | None
    p95_ms: float | None
    cpu_us: float | None = None  # proxy CPU per transaction (µs), user + system
    sys_share: float | None = None  # of which in the kernel
    failed: str = ""


Run = tuple[float | None, float | None, float | None, float | None, str]


def run_point_select(port: int, threads: int, seconds: int, pid: int | None) -> Run:
    """One sysbench run: (TPS, p95 ms, CPU µs/tx of ``pid``'s tree, system share, error)."""
    before = process_tree_times(pid) if pid else (0.0, 0.0)
    try:
        got = sysbench(
            "oltp_point_select", "run", port=port, user="root", password=PASSWORD,
            database=MariaDBServer.database, threads=threads, seconds=seconds,
            table_size=TABLE_SIZE, timeout=seconds + 120,
        )  # fmt: skip
    except SysbenchFailed as exc:
        return None, None, None, None, str(exc).splitlines()[-1][:90]
    if got.ignored_errors or got.reconnects:
        return None, None, None, None, f"{got.ignored_errors} errors, {got.reconnects} reconnects"
    cpu_us = share = None
    if pid and got.transactions:
        after = process_tree_times(pid)
        user, system = after[0] - before[0], after[1] - before[1]
        cpu_us = (user + system) / got.transactions * 1e6
        share = system / (user + system) if user + system else None
    return got.tps, got.p95_ms, cpu_us, share, ""


def summarize(target: str, threads: int, runs: list[Run]) -> Result:
    failures = [err for tps, *_rest, err in runs if tps is None]
    if failures:
        return Result(target, threads, None, None, failed=failures[0])

    def median(i: int) -> float | None:
        values = [v for r in runs if isinstance(v := r[i], float)]
        return statistics.median(values) if values else None

    return Result(target, threads, median(0), median(1), median(2), median(3))


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5, help="per sysbench run")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved runs; medians shown")
    ap.add_argument("--clients", default="20,200", help="sysbench thread counts")
    ap.add_argument("--workers", default="1", help="fleetpool worker counts to try")
    ap.add_argument("--baseline", help="also run the proxy of this git revision (1 worker)")
    ap.add_argument(
        "--no-floor", action="store_true", help="leave out the bare relay (the cost floor)"
    )
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    started = _results.now()

    server = MariaDBServer(
        max_connections=300,  # 200 direct threads plus the proxies' pools
        password=PASSWORD,
        settings={"innodb_buffer_pool_size": "64M", "thread_cache_size": 256},
    ).start()
    workdir = Path(tempfile.mkdtemp(prefix="fleetpool-bench-mysql-"))
    try:
        sysbench("oltp_point_select", "prepare", port=server.port, user="root",
                 password=PASSWORD, database=server.database, table_size=TABLE_SIZE,
                 timeout=300)  # fmt: skip
        print(
            f"MariaDB on {HOST}:{server.port} (max_connections=300), sysbench "
            f"oltp_point_select, 1 table of {TABLE_SIZE:,} rows, {args.rounds} interleaved runs "
            f"of {args.seconds}s per figure (median), {os.cpu_count()} CPUs, "
            f"fleetpool pool {POOL} server connections"
        )
        upstream = f"mysql://root@{HOST}:{server.port}/{server.database}"
        results: list[Result] = []
        with contextlib.ExitStack() as stack:
            # (label, port, pid whose process tree is the proxy, or None)
            targets: list[tuple[str, int, int | None]] = [(DIRECT, server.port, None)]
            if not args.no_floor:
                targets.append((FLOOR, *stack.enter_context(bare_relay(server.port))))
            for workers in (int(w) for w in args.workers.split(",")):
                label = f"fleetpool ({workers} worker{'s' if workers > 1 else ''})"
                proxy = fleetpool_proxy(0, workers, upstream=upstream, upstream_password=PASSWORD)
                targets.append((label, *stack.enter_context(proxy)))
            if args.baseline:
                src = checkout_src(args.baseline, workdir)
                proxy = fleetpool_proxy(0, 1, src, upstream=upstream, upstream_password=PASSWORD)
                targets.append((f"fleetpool @{args.baseline[:10]}", *stack.enter_context(proxy)))
            for n in clients:
                runs: dict[str, list[Run]] = {}
                for _round in range(args.rounds):
                    for label, port, pid in targets:
                        runs.setdefault(label, []).append(
                            run_point_select(port, n, args.seconds, pid)
                        )
                for label, got in runs.items():
                    r = summarize(label, n, got)
                    results.append(r)
                    print(f"  {label:<24} {n:>4} threads: {fmt(r.tps, ',.0f')} tps, "
                          f"p95 {fmt(r.p95_ms, '.2f')} ms, {fmt(r.cpu_us, '.1f')} µs CPU/tx "
                          f"({fmt(r.sys_share and r.sys_share * 100, '.0f')}% system) "
                          f"{r.failed}", flush=True)  # fmt: skip
            # oltp_read_write (transactions of 18 statements) must run clean through it.
            clean: dict[str, object] = {}
            print()
            for label, port, _pid in [t for t in targets if t[0] != FLOOR][:2]:
                try:
                    rw = sysbench("oltp_read_write", "run", port=port, user="root",
                                  password=PASSWORD, database=server.database, threads=20,
                                  seconds=args.seconds, table_size=TABLE_SIZE,
                                  timeout=args.seconds + 120)  # fmt: skip
                except SysbenchFailed as exc:
                    clean[label] = {"failed": str(exc)[-500:]}
                    print(f"oltp_read_write, {label}, 20 threads: FAILED: {exc}")
                    continue
                clean[label] = {"tps": rw.tps, "ignored_errors": rw.ignored_errors,
                                "reconnects": rw.reconnects}  # fmt: skip
                print(f"oltp_read_write, {label}, 20 threads: {rw.tps:,.0f} tps, "
                      f"{rw.ignored_errors} retried deadlocks/lock waits, "
                      f"{rw.reconnects} reconnects, no other error")  # fmt: skip
        print(f"\n{'target':<26}{'threads':>8}{'TPS':>10}{'p95 ms':>9}{'CPU µs/tx':>11}  ratio")
        direct = {r.threads: r.tps for r in results if r.target == DIRECT}
        for r in results:
            ratio = ""
            base = direct.get(r.threads)
            floor = {x.threads: x.tps for x in results if x.target == FLOOR}.get(r.threads)
            if r.target not in (DIRECT, FLOOR) and r.tps and floor:
                ratio_floor = f"; {r.tps / floor:.2f}x the floor"
            else:
                ratio_floor = ""
            if r.target != DIRECT and r.tps and base:
                goal = TARGETS.get(r.threads)
                ratio = f"{r.tps / base:.2f}x direct"
                if goal is not None:
                    met = "met" if r.tps / base >= goal else "NOT met"
                    ratio += f" (target >= {goal:.1f}x: {met})"
                ratio += ratio_floor
            figures = f"{fmt(r.tps, ',.0f'):>10}{fmt(r.p95_ms, '.2f'):>9}{fmt(r.cpu_us, '.1f'):>11}"
            print(f"{r.target:<26}{r.threads:>8}{figures}  {ratio or r.failed}")
        path = _results.save(
            "proxy_mysql",
            {
                "seconds": args.seconds,
                "rounds": args.rounds,
                "point_select": [asdict(r) for r in results],
                "read_write": clean,
            },
            started,
        )
        print(f"results: {path}")
    finally:
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
