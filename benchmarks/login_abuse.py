"""Benchmark: a client's login latency while another address guesses passwords.

Usage::

    .venv/bin/python -m benchmarks.login_abuse [--attempts 1000] [--logins 1000]
                                               [--concurrency 100]

Strategy: one throwaway PostgreSQL and two fleetpool proxies run as their own
processes (so the clients here do not share an interpreter with them): one with the
default login throttling, one with it turned off (no delay, no ban, no caps worth the
name) as the peer. For each proxy the victim -- psycopg from 127.0.0.1, SCRAM-SHA-256,
connect + ``select 1`` + close, one at a time -- logs in ``--logins`` times alone, then
again while the attacker (tests/login_attack.py, from 127.0.0.2) sends ``--attempts``
wrong passwords, ``--concurrency`` at once, from a process of its own. Printed: the
victim's p50/p99 in both phases and their ratio, and how many of the attacker's passwords
each proxy checked, per second. Nothing asserts timings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

from fleetpool_testing import HOST, PostgresServer, free_port
from tests.login_attack import FAILED, REFUSED, AttackResult, attack

from . import _results
from .proxy import wait_port

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "app", "victim-password"
THROTTLE_OFF = {
    "login_delay": 0,
    "login_delay_max": 0,
    "login_ban_after": 0,
    "max_logins_per_address": 100000,
    "max_logins_in_progress": 100000,
}


@contextlib.contextmanager
def proxy(pg_port: int, workdir: Path, name: str, settings: dict[str, Any]) -> Iterator[int]:
    port = free_port()
    lines = [
        f'upstream = "postgresql://postgres@{HOST}:{pg_port}/postgres"',
        f'listen = "{HOST}:{port}"',
        'server_login = "upstream"',
        'log_level = "ERROR"',
        *(f"{k} = {v}" for k, v in settings.items()),
        "[users]",
        f'{USER} = "{PASSWORD}"',
    ]
    config = workdir / f"{name}.toml"
    config.write_text("\n".join(lines) + "\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetpool.proxy", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def victim_logins(port: int, n: int, stop: threading.Event | None = None) -> list[float]:
    dsn = f"postgresql://{USER}:{PASSWORD}@{HOST}:{port}/postgres"
    times: list[float] = []
    deadline = time.monotonic() + 300
    for _ in range(n):
        if (stop is not None and stop.is_set()) or time.monotonic() > deadline:
            break
        t0 = time.monotonic()
        with psycopg.connect(dsn, connect_timeout=30) as conn:
            conn.execute("select 1")
        times.append(time.monotonic() - t0)
    return times


def quantiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"n": len(ordered), "p50_ms": statistics.median(ordered) * 1e3, "p99_ms": p99 * 1e3}


def _attack(port: int, attempts: int, concurrency: int) -> AttackResult:
    return asyncio.run(attack(HOST, port, USER, attempts=attempts, concurrency=concurrency))


def measure(port: int, args: argparse.Namespace) -> dict[str, Any]:
    victim_logins(port, 10)  # warm up: the server parameters get learnt
    alone = quantiles(victim_logins(port, args.logins))
    stop = threading.Event()
    during: list[float] = []

    def run() -> None:
        during.extend(victim_logins(port, args.logins * 20, stop))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    # The attacker runs in a process of its own: its SCRAM work must not hold this
    # interpreter's lock while the victim's logins are timed here.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = pool.submit(_attack, port, args.attempts, args.concurrency).result(600)
    stop.set()
    thread.join(120)
    checked = result.outcomes[FAILED]
    return {
        "victim_alone": alone,
        "victim_under_attack": quantiles(during),
        "attack_seconds": result.seconds,
        "passwords_checked": checked,
        "refused_up_front": result.outcomes[REFUSED],
        "checked_per_second": checked / result.seconds if result.seconds else None,
        "outcomes": dict(result.outcomes),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attempts", type=int, default=1000)
    ap.add_argument("--logins", type=int, default=1000, help="victim logins alone")
    ap.add_argument("--concurrency", type=int, default=100)
    args = ap.parse_args()
    started = _results.now()
    server = PostgresServer(max_connections=100).start()
    workdir = Path(tempfile.mkdtemp(prefix="fleetpool-bench-"))
    figures: dict[str, Any] = {"attempts": args.attempts, "concurrency": args.concurrency}
    try:
        for name, settings in (("throttled", {}), ("throttle off", THROTTLE_OFF)):
            slug = name.replace(" ", "-")
            with proxy(server.port, workdir, slug, settings) as port:
                got = figures[name] = measure(port, args)
            alone, during = got["victim_alone"], got["victim_under_attack"]
            print(
                f"{name:>13}: victim p50 {alone['p50_ms']:.1f} ms, p99 {alone['p99_ms']:.1f} ms "
                f"alone; under attack p50 {during['p50_ms']:.1f} ms, p99 "
                f"{during['p99_ms']:.1f} ms ({during['p99_ms'] / alone['p99_ms']:.2f}x the "
                f"p99, {during['n']} logins); attacker: {got['passwords_checked']} of "
                f"{args.attempts} passwords checked in {got['attack_seconds']:.1f} s "
                f"({got['checked_per_second']:.1f}/s), {got['refused_up_front']} refused "
                "up front",
                flush=True,
            )
        on, off = figures["throttled"], figures["throttle off"]
        print(
            "throttled vs off: victim p99 under attack "
            f"{on['victim_under_attack']['p99_ms'] / off['victim_under_attack']['p99_ms']:.2f}x; "
            f"passwords checked {on['passwords_checked']} vs {off['passwords_checked']}"
        )
        path = _results.save("login_abuse", figures, started)
        print(f"results: {path}")
    finally:
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
