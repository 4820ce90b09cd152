"""A bare TCP relay on uvloop: each client connection gets its own upstream connection and
bytes pass through unparsed. Not a pooler: the floor under any Python proxy's cost per
transaction (two more loopback hops, their syscalls and wake-ups, almost no Python), run
next to the proxy so its figures can be read against that floor.

Usage: ``python -m benchmarks._relay LISTEN_PORT UPSTREAM_PORT`` (loopback only).
"""

from __future__ import annotations

import asyncio
import sys

from fleetpool_testing import HOST


class _Side(asyncio.Protocol):
    def __init__(self) -> None:
        self.peer: _Side | None = None
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.pending.append(data)  # the upstream connection is not open yet
        elif not peer.transport.is_closing():  # else the other side has just gone
            peer.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            peer.transport.close()


class _Client(_Side):
    def __init__(self, upstream: int) -> None:
        super().__init__()
        self.upstream = upstream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        server = _Side()
        server.peer = self
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().create_connection(lambda: server, HOST, self.upstream),
                10,
            )
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        self.peer = server
        assert server.transport is not None
        for data in self.pending:
            server.transport.write(data)
        self.pending.clear()


async def _serve(listen: int, upstream: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: _Client(upstream), HOST, listen)
    await asyncio.Event().wait()  # until the benchmark terminates the process


def main() -> None:
    import uvloop

    uvloop.run(_serve(int(sys.argv[1]), int(sys.argv[2])))


if __name__ == "__main__":
    main()
