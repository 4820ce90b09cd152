# Strategy: flow control of an attached client/server pair, in one place.
#
# Both ends of a relayed conversation are Endpoints. While a client and a server
# connection are attached they are each other's ``peer``: when one end's socket
# cannot take more bytes (asyncio calls ``pause_writing``), the other end stops
# reading, so the proxy never buffers more than a socket's worth per pair; when it
# drains, reading resumes. Detaching resumes whatever the pair had paused.
from __future__ import annotations

import asyncio
from typing import Any


class Endpoint(asyncio.Protocol):
    __slots__ = ("peer", "reading_paused", "transport")

    def __init__(self) -> None:
        self.transport: Any = None  # an asyncio.Transport once connected
        self.peer: Endpoint | None = None
        self.reading_paused = False

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

    # asyncio callbacks: our socket's send buffer is full / drained
    def pause_writing(self) -> None:
        peer = self.peer
        if peer is not None:
            peer.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None:
            peer.resume_reading()

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)


def link(client: Endpoint, server: Endpoint) -> None:
    client.peer = server
    server.peer = client


def unlink(client: Endpoint, server: Endpoint) -> None:
    """Detach the pair; reading paused for the pair's sake resumes."""
    client.peer = None
    server.peer = None
    server.resume_reading()
