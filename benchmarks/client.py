"""Client hot path: a warm fleetpool invocation against the raw driver.

Strategy: the only number that matters to a function is the latency of a warm
invocation (``with db.connection()`` + ``SELECT 1``). It is compared, per engine,
with the raw driver reusing one connection (the floor) and with connecting per
invocation (the naive ceiling), then with a Redis budget (the store's PING p50
is shown as one store round trip). The variants run in interleaved rounds so
machine noise hits them alike; p50/p99 come from per-invocation timings.
A clean invocation must make no reset round trip: fleetpool's own counters
(resets, rollbacks) and, on MySQL, the server's per-session ``Questions``
counter (exactly one statement per invocation) prove it.

CPU placement (benchmarks/_placement.py): left alone, the raw connection and
fleetpool's connection land on different CPUs by chance and the comparison
measures that luck (20 us against 80 us round trips here). So by default the
benchmark pins itself and the servers it started (every process and thread,
so new sessions inherit it) to one CPU: every variant gets the same, fastest
round trip, which makes fleetpool's own overhead the largest share it can be.
``--placement cross`` puts the servers on another CPU instead; ``none``
leaves the scheduler alone.

Usage: python -m benchmarks.client [--pg-dsn DSN] [--mysql-dsn DSN] [--redis-url URL] [-n N]
                                   [--placement same|cross|none]
(from the repository root). Without DSNs/URL it starts throwaway servers
(``fleetpool_testing``). Each run's figures are also written to
``benchmarks/results/client-<time>-<pid>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import fleetpool

from . import _results
from ._placement import PLACEMENTS, place


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn: Callable[[], object], n: int, out: list[float]) -> None:
    clock = time.perf_counter
    for _ in range(n):
        t = clock()
        fn()
        out.append(clock() - t)


def select1(conn: Any) -> None:
    if hasattr(conn, "pgconn"):
        conn.execute("SELECT 1").fetchone()
    else:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()


def raw_connect(dsn: str) -> Any:
    if dsn.startswith("postgres"):
        import psycopg

        return psycopg.connect(dsn, autocommit=True)
    import pymysql

    from fleetpool.client.dsn import parse_dsn

    t = parse_dsn(dsn)
    return pymysql.connect(
        host=t.host,
        port=t.port,
        user=t.user,
        password=t.password or "",
        database=t.database,
        autocommit=True,
    )


def questions(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Questions'")
        return int(cur.fetchall()[0][1])


def bench_engine(
    engine: str, dsn: str, redis_url: str, n: int, rounds: int
) -> list[dict[str, Any]]:
    import redis

    budget_name = f"bench-{engine}-{time.time_ns()}"
    budget = fleetpool.open_budget(redis_url, budget_name)
    budget.configure(limit=10)
    raw = raw_connect(dsn)
    db = fleetpool.Database(dsn, handle_signals=False, reap_threshold=None)
    dbb = fleetpool.Database(
        dsn, budget=budget, handle_signals=False, reap_threshold=None, lease_ttl=600
    )
    # The same without fair handoff: the peer that shows what listening for
    # waiters at check-in costs a clean invocation.
    dbn = fleetpool.Database(
        dsn,
        budget=budget,
        handle_signals=False,
        reap_threshold=None,
        lease_ttl=600,
        fair_handoff=False,
    )
    r = redis.Redis.from_url(redis_url)

    def warm(d: fleetpool.Database) -> Callable[[], None]:
        def run() -> None:
            with d.connection() as conn:
                select1(conn)

        return run

    def per_invocation() -> None:
        c = raw_connect(dsn)
        select1(c)
        c.close()

    series: dict[str, list[float]] = {
        k: [] for k in ("raw", "fp", "fp_redis", "fp_redis_nofair", "connect", "ping")
    }
    for fn in (lambda: select1(raw), warm(db), warm(dbb), warm(dbn), r.ping):
        timed(fn, 200, [])  # warm-up: caches, prepared statements, first connect
    q0 = None
    if engine == "mysql":
        with db.connection() as conn:
            q0 = questions(conn)
    base = (db.stats.resets, db.stats.rollbacks, db.stats.connects)
    # Small alternating blocks: drift on a shared machine (another process
    # waking up, CPU frequency) then hits every variant alike.
    block = 50
    per_round = max(1, n // block) * block
    hot = [
        (lambda: select1(raw), series["raw"]),
        (warm(db), series["fp"]),
        (warm(dbb), series["fp_redis"]),
        (warm(dbn), series["fp_redis_nofair"]),
        (r.ping, series["ping"]),
    ]
    for r in range(rounds):
        for i in range(per_round // block):
            # A variant measured right after another one's block runs a little
            # slower here (a colder server process); rotating the order spreads
            # that over every variant instead of always charging the second.
            shift = (r * (per_round // block) + i) % len(hot)
            for fn, out in hot[shift:] + hot[:shift]:
                timed(fn, block, out)
        timed(per_invocation, max(10, n // 20), series["connect"])
    extra_statements = None
    if engine == "mysql" and q0 is not None:
        with db.connection() as conn:
            # n*rounds invocations of one statement (n rounded to blocks), plus the SHOW itself.
            extra_statements = questions(conn) - q0 - per_round * rounds - 1
    resets = db.stats.resets - base[0] + db.stats.rollbacks - base[1]
    store_calls = (dbb.stats.acquires + dbb.stats.renewals + dbb.stats.handoffs - 1) / (
        per_round * rounds + 200
    )
    raw.close()
    db.close()
    dbb.close()
    dbn.close()
    budget.close()
    return [
        {
            "engine": engine,
            "p50": {k: pct(v, 0.5) for k, v in series.items()},
            "p99": {k: pct(v, 0.99) for k, v in series.items()},
            "resets": resets,
            "reconnects": db.stats.connects - base[2],
            "extra_statements": extra_statements,
            "store_calls_per_invocation": store_calls,
        }
    ]


@contextlib.contextmanager
def servers(args: argparse.Namespace) -> Iterator[dict[str, str]]:
    started: list[Any] = []
    urls = {"postgresql": args.pg_dsn, "mysql": args.mysql_dsn, "redis": args.redis_url}
    try:
        from fleetpool_testing import MariaDBServer, PostgresServer, RedisServer

        if not urls["postgresql"]:
            s = PostgresServer(max_connections=20).start()
            started.append(s)
            urls["postgresql"] = s.dsn
        if not urls["mysql"]:
            s = MariaDBServer(max_connections=20).start()
            started.append(s)
            urls["mysql"] = s.dsn
        if not urls["redis"]:
            s = RedisServer().start()
            started.append(s)
            urls["redis"] = s.url
        print(place(args.placement, [s.pid for s in started if s.pid is not None]))
        yield urls
    finally:
        for s in reversed(started):
            s.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pg-dsn")
    ap.add_argument("--mysql-dsn")
    ap.add_argument("--redis-url")
    ap.add_argument("-n", type=int, default=1000, help="invocations per variant per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--placement",
        choices=PLACEMENTS,
        default="same",
        help="CPU placement of client and started servers (see the module docstring)",
    )
    args = ap.parse_args()
    ok = True
    started = _results.now()
    with servers(args) as urls:
        results = []
        for engine in ("postgresql", "mysql"):
            results += bench_engine(engine, urls[engine], urls["redis"], args.n, args.rounds)
    us = 1e6
    print(f"\nclient hot path, {args.rounds} rounds x {args.n} invocations (microseconds)\n")
    header = (
        f"{'engine':<11}{'variant':<34}{'p50':>9}{'p99':>9}{'vs raw p50':>12}{'target':>26}{'':>6}"
    )
    print(header)
    print("-" * len(header))
    for res in results:
        p50, p99 = res["p50"], res["p99"]
        raw = p50["raw"]
        rows = [
            ("raw driver, one connection", "raw", "", None),
            ("connect per invocation", "connect", "", None),
            ("fleetpool warm, no budget", "fp", "<= 1.3x raw", p50["fp"] <= 1.3 * raw),
            (
                "fleetpool warm, Redis budget",
                "fp_redis",
                "<= raw + 1 PING",
                p50["fp_redis"] <= raw + p50["ping"],
            ),
            ("  same, fair_handoff=False", "fp_redis_nofair", "", None),
            ("Redis PING (one store trip)", "ping", "", None),
        ]
        for label, key, target, passed in rows:
            mark = "" if passed is None else ("PASS" if passed else "FAIL")
            ok &= passed is not False
            print(
                f"{res['engine']:<11}{label:<34}{p50[key] * us:>9.1f}{p99[key] * us:>9.1f}"
                f"{p50[key] / raw:>11.2f}x{target:>26}{mark:>6}"
            )
        print(
            f"{res['engine']:<11}{'fair handoff on/off, p50':<34}"
            f"{p50['fp_redis'] / p50['fp_redis_nofair']:>9.3f}x"
        )
        clean = res["resets"] == 0 and res["extra_statements"] in (None, 0)
        ok &= clean
        extra = (
            ""
            if res["extra_statements"] is None
            else (f", server-counted extra statements={res['extra_statements']}")
        )
        print(
            f"{res['engine']:<11}{'clean invocations: resets+rollbacks':<34}"
            f"{res['resets']:>9}{'':>9}{'':>12}{'0 round trips':>26}"
            f"{'PASS' if clean else 'FAIL':>6}"
            f"   (reconnects={res['reconnects']}{extra}; store calls/invocation"
            f"={res['store_calls_per_invocation']:.4f})"
        )
        print()
    print("overall:", "PASS" if ok else "FAIL")
    path = _results.save(
        "client", {"n": args.n, "rounds": args.rounds, "engines": results, "pass": ok}, started
    )
    print(f"results: {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
