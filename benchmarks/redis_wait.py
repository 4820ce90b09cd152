"""What ``wait_replicas`` costs: acquire+release with and without WAIT for a replica.

A throwaway primary with one replica on loopback (or ``--primary-url`` with
replicas of its own). The two modes run in interleaved blocks in one run, with
the server's PING as the floor; printed as p50/p99 of an acquire and of an
acquire+release pair, and the WAIT mode's ratio to the default. A grant in
WAIT mode costs one more round trip plus the replica's acknowledgement.

Usage: python -m benchmarks.redis_wait [--primary-url URL] [-n N] [--rounds R]
(from the repository root). Figures are also written to
``benchmarks/results/redis_wait-<time>-<pid>.json``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import fleetpool

from . import _results


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(url: str, n: int, rounds: int) -> dict[str, Any]:
    import redis

    name = f"bench-wait-{time.time_ns()}"
    plain = fleetpool.open_budget(url, name, on_unavailable="fail_closed")
    waiting = fleetpool.open_budget(
        url + "?wait_replicas=1&wait_timeout=1", name, on_unavailable="fail_closed"
    )
    plain.configure(limit=100)
    ping = redis.Redis.from_url(url)
    series: dict[str, list[float]] = {k: [] for k in ("acquire", "acquire_wait", "ping")}
    pairs: dict[str, list[float]] = {"acquire": [], "acquire_wait": []}
    clock = time.perf_counter
    for budget in (plain, waiting):  # warm-up: connections, functions loaded
        for _ in range(50):
            budget.release(budget.acquire(function="api", ttl=30))
    block = 50
    for _ in range(rounds):
        for _ in range(max(1, n // block)):
            for key, budget in (("acquire", plain), ("acquire_wait", waiting)):
                for _ in range(block):
                    t0 = clock()
                    lease = budget.acquire(function="api", ttl=30)
                    t1 = clock()
                    budget.release(lease)
                    series[key].append(t1 - t0)
                    pairs[key].append(clock() - t0)
            for _ in range(block):
                t0 = clock()
                ping.ping()
                series["ping"].append(clock() - t0)
    plain.close()
    waiting.close()
    return {
        "p50": {k: _pct(v, 0.5) for k, v in series.items()},
        "p99": {k: _pct(v, 0.99) for k, v in series.items()},
        "pair_p50": {k: _pct(v, 0.5) for k, v in pairs.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--primary-url", help="a primary with at least one replica")
    ap.add_argument("-n", type=int, default=1000, help="acquires per mode per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    started = _results.now()
    servers: list[Any] = []
    try:
        url = args.primary_url
        if not url:
            import redis

            from fleetpool_testing import RedisServer

            primary = RedisServer(settings={"repl-diskless-sync-delay": 0}).start()
            servers.append(primary)
            replica = RedisServer(
                extra_args=["--replicaof", primary.host, str(primary.port)]
            ).start()
            servers.append(replica)
            deadline = time.monotonic() + 20
            probe = redis.Redis(host=replica.host, port=replica.port)
            while probe.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise SystemExit("the replica never linked up")
                time.sleep(0.1)
            url = primary.url
        res = measure(url, args.n, args.rounds)
    finally:
        for s in reversed(servers):
            s.close()
    us = 1e6
    p50, p99, pair = res["p50"], res["p99"], res["pair_p50"]
    print(f"\nRedis budget, {args.rounds} rounds x {args.n} acquires per mode (microseconds)\n")
    print(f"{'mode':<34}{'acquire p50':>12}{'p99':>9}{'pair p50':>10}{'vs default':>12}")
    print("-" * 77)
    for label, key in (
        ("default (async replication)", "acquire"),
        ("wait_replicas=1", "acquire_wait"),
    ):
        print(
            f"{label:<34}{p50[key] * us:>12.1f}{p99[key] * us:>9.1f}{pair[key] * us:>10.1f}"
            f"{p50[key] / p50['acquire']:>11.2f}x"
        )
    print(f"{'PING (one round trip)':<34}{p50['ping'] * us:>12.1f}{p99['ping'] * us:>9.1f}")
    path = _results.save("redis_wait", {"n": args.n, "rounds": args.rounds, **res}, started)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
