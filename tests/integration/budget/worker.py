"""A worker process for the budget stress and crash tests.

Usage: worker.py URL NAME LOG SECONDS HOLD_MS TTL [hold-forever]

It loops acquire -> hold -> release until SECONDS have passed and appends one
line per event to LOG, flushed at once so a SIGKILL loses nothing written:
``A <lease_id> <t_after_acquire> <expires_at>`` and ``R <lease_id> <t_before_release>``.
With ``hold-forever`` it acquires one lease, logs it and sleeps until killed.
"""

from __future__ import annotations

import os
import random
import sys
import time

import fleetpool


def main() -> None:
    url, name, log_path, seconds, hold_ms, ttl = sys.argv[1:7]
    forever = len(sys.argv) > 7 and sys.argv[7] == "hold-forever"
    budget = fleetpool.open_budget(url, name, on_unavailable="fail_closed")
    deadline = time.monotonic() + float(seconds)
    rng = random.Random(os.getpid())
    with open(log_path, "a", buffering=1) as log:
        log.write(f"S {os.getpid()}\n")
        while time.monotonic() < deadline:
            try:
                lease = budget.acquire(
                    function=rng.choice(["api", "jobs"]),
                    holder=f"w{os.getpid()}",
                    ttl=float(ttl),
                    wait=1.0,
                )
            except fleetpool.NoConnectionsLeft:
                log.write("N\n")
                continue
            log.write(f"A {lease.id} {time.time():.6f} {lease.expires_at:.6f}\n")
            if forever:
                time.sleep(3600)
            time.sleep(rng.uniform(0, float(hold_ms)) / 1000)
            log.write(f"R {lease.id} {time.time():.6f}\n")
            budget.release(lease)
        log.write("E\n")


if __name__ == "__main__":
    main()
