# Strategy: the worker's clients and their cancel keys, engine-neutral.
#
# The cancel key a client receives is the proxy's own. Its process-id half carries the
# worker index in its top bits, so with several workers on one SO_REUSEPORT port a
# cancel request that lands on the wrong worker is handed to the worker that owns the
# client (through ``forward``, see workers.py); the right worker asks the client to
# cancel whatever it runs.
from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, Protocol

WORKER_SHIFT = 22
# Keys that mean a MySQL KILL (no secret key: the id alone, from an authenticated client)
KILL_QUERY, KILL_CONNECTION = -(1 << 32), -(1 << 32) - 1
MAX_WORKERS = 1 << (31 - WORKER_SHIFT)


class Cancellable(Protocol):
    def cancel(self) -> None:
        """Cancel what the client runs (or its wait for a server connection)."""

    def close(self) -> None:
        """End the client's session."""


class Registry:
    def __init__(
        self,
        worker_index: int,
        workers: int,
        forward: Callable[[int, int, int], None] | None = None,
    ) -> None:
        if workers > MAX_WORKERS:
            raise ValueError(f"at most {MAX_WORKERS} workers")
        self.worker_index = worker_index
        self.workers = workers
        self._forward = forward
        self.clients: set[Any] = set()
        self.cancel_keys: dict[tuple[int, int], Any] = {}
        self.by_id: dict[int, Any] = {}  # pid half alone: MySQL's KILL names only that
        self.opened_total = 0
        self.cancels = 0
        self._counter = 0

    def __len__(self) -> int:
        return len(self.clients)

    def opened(self, client: Any) -> None:
        self.clients.add(client)
        self.opened_total += 1

    def closed(self, client: Any, key: tuple[int, int] | None = None) -> None:
        self.clients.discard(client)
        if key is not None:
            self.cancel_keys.pop(key, None)
            if self.by_id.get(key[0]) is client:
                del self.by_id[key[0]]

    def new_cancel_key(self, client: Any) -> tuple[int, int]:
        self._counter = (self._counter + 1) & ((1 << WORKER_SHIFT) - 1) or 1
        pid = (self.worker_index << WORKER_SHIFT) | self._counter
        key = secrets.randbits(32) - (1 << 31)
        self.cancel_keys[(pid, key)] = client
        self.by_id[pid] = client
        return pid, key

    def cancel(self, pid: int, key: int) -> None:
        """A cancel request carrying one of our keys (or a sibling worker's)."""
        owner = pid >> WORKER_SHIFT
        if self.workers > 1 and owner != self.worker_index and 0 <= owner < self.workers:
            if self._forward is not None:
                self._forward(owner, pid, key)
            return
        if key in (KILL_QUERY, KILL_CONNECTION):  # forwarded by kill() of a sibling
            self.kill(pid, key == KILL_CONNECTION)
            return
        client: Cancellable | None = self.cancel_keys.get((pid, key))
        if client is not None:
            self.cancels += 1
            client.cancel()

    def kill(self, pid: int, connection: bool) -> None:
        """MySQL's ``KILL [QUERY|CONNECTION] <id>`` of a client of the proxy."""
        owner = pid >> WORKER_SHIFT
        if self.workers > 1 and owner != self.worker_index and 0 <= owner < self.workers:
            if self._forward is not None:
                self._forward(owner, pid, KILL_CONNECTION if connection else KILL_QUERY)
            return
        target: Cancellable | None = self.by_id.get(pid)
        if target is None:
            return
        self.cancels += 1
        if connection:
            target.close()
        else:
            target.cancel()
