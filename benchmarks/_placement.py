"""CPU placement of a benchmark's client and the servers it started.

On a small virtual machine a loopback round trip costs several times as much when
the server's process runs on another CPU than the client (a cross-CPU wake-up of
an idle virtual CPU) as when both share one, and the scheduler keeps each server
session where it first ran. Left alone, two runs of the same code can differ by
that factor; pinning makes the figures comparable. ``same`` puts the started
servers on the client's CPU, ``cross`` on another one, ``none`` leaves the
scheduler alone (and is all that applies to servers given by URL or DSN).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

PLACEMENTS = ("same", "cross", "none")


def pin_tree(pid: int, cpus: set[int]) -> int:
    """Pin every thread of ``pid`` and of its descendants to ``cpus``; return how many."""
    pinned = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(tid), cpus)
            pinned += 1
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
            for child in f.read().split():
                pinned += pin_tree(int(child), cpus)
    return pinned


def place(placement: str, server_pids: list[int]) -> str:
    """Apply ``placement`` to this process and ``server_pids``; say what was done."""
    cpus = sorted(os.sched_getaffinity(0))
    if placement == "none" or len(cpus) < 2 or not server_pids:
        return "placement: left to the scheduler"
    client = {cpus[0]}
    servers = client if placement == "same" else {cpus[1]}
    os.sched_setaffinity(0, client)
    threads = sum(pin_tree(pid, servers) for pid in server_pids)
    where = "the same CPU as" if placement == "same" else "another CPU than"
    return (
        f"placement: client on CPU {cpus[0]}, {len(server_pids)} started servers "
        f"({threads} threads) on {where} the client"
    )


@contextlib.contextmanager
def placed(placement: str, server_pids: list[int]) -> Iterator[str]:
    """:func:`place` for the duration of a block; every CPU is allowed again after it."""
    every = os.sched_getaffinity(0)
    try:
        yield place(placement, server_pids)
    finally:
        os.sched_setaffinity(0, every)
        for pid in server_pids:
            pin_tree(pid, every)
