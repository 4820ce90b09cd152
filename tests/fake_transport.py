"""An asyncio transport that records writes: the relay's unit tests drive the
proxy's protocol objects with it (no sockets, no event loop I/O)."""

from __future__ import annotations

from typing import Any


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out.append(bytes(data))  # a copy: the proxy may reuse its buffer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1)

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def sent(self) -> bytes:
        """Everything written since the last call."""
        data = b"".join(self.out)
        self.out.clear()
        return data
