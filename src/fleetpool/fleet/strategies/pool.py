"""pool: a 5-connection pool per container, opened in the global section.

The anti-pattern the container model punishes: a container serves one invocation
at a time, so it only ever uses one of its connections while all of them count
against the server's limit.
"""

from __future__ import annotations

import os
from typing import Any

from ._workload import Settings, connect, is_closed, work

SETTINGS = Settings.from_env()
SIZE = int(os.environ.get("FLEET_POOL_SIZE", "5"))


class MinimalPool:
    """Opens ``size`` connections up front; hands out the first free one."""

    def __init__(self, size: int) -> None:
        self.conns: list[Any] = [connect(SETTINGS) for _ in range(size)]
        self.busy: set[int] = set()

    def get(self) -> tuple[int, Any]:
        for i, conn in enumerate(self.conns):
            if i not in self.busy:
                if is_closed(conn):
                    conn = self.conns[i] = connect(SETTINGS)
                self.busy.add(i)
                return i, conn
        raise RuntimeError("pool exhausted")

    def put(self, i: int) -> None:
        self.busy.discard(i)


POOL = MinimalPool(SIZE)


def handler(event: Any, context: Any) -> dict[str, Any]:
    i, conn = POOL.get()
    try:
        return work(conn, event)
    finally:
        POOL.put(i)
