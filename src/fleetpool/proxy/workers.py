# Strategy: several worker processes share one port (SO_REUSEPORT) and act as one
# proxy. Each worker listens on a private Unix socket for two things from its
# siblings: cancel requests that landed on the wrong worker, and admin commands
# (PAUSE, RESUME, RECONNECT, WAIT_CLOSE, RELOAD) that must reach every worker -- the
# worker a console client happens to land on runs the command itself and on every
# sibling, and answers when all have. Each worker also publishes its numbers and its
# lists of clients and server connections to a small JSON file once per janitor tick,
# which any worker merges for SHOW commands, /status and /metrics.
from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("fleetpool.proxy.workers")

_CANCEL = b"C"
_COMMAND = b"A"
_HEADER = struct.Struct("!cI")


def socket_path(port: int, worker: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"fleetpool-{port}-w{worker}.sock")


def stats_path(port: int, worker: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"fleetpool-{port}-w{worker}.json")


def publish(port: int, worker: int, data: dict[str, Any]) -> None:
    path = stats_path(port, worker)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, default=str)
    os.replace(tmp, path)


def read_published(port: int, worker: int) -> dict[str, Any] | None:
    try:
        with open(stats_path(port, worker)) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Channel:
    """This worker's Unix socket, and calls to its siblings' sockets."""

    def __init__(
        self,
        port: int,
        worker: int,
        workers: int,
        on_cancel: Callable[[int, int], None],
        on_command: Callable[[str], Awaitable[str]],
    ) -> None:
        self.port = port
        self.worker = worker
        self.workers = workers
        self._on_cancel = on_cancel
        self._on_command = on_command
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        path = socket_path(self.port, self.worker)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self._server = await asyncio.start_unix_server(self._serve, path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for path in (socket_path(self.port, self.worker), stats_path(self.port, self.worker)):
            try:
                os.unlink(path)
            except OSError:
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            kind, size = _HEADER.unpack(await asyncio.wait_for(reader.readexactly(5), 10))
            if size > 1 << 16:
                return
            body = await asyncio.wait_for(reader.readexactly(size), 10)
            if kind == _CANCEL and size == 12:
                pid, key = struct.unpack("!iq", body)  # (key: wider for MySQL's KILL)
                self._on_cancel(pid, key)
            elif kind == _COMMAND:
                answer = (await self._on_command(body.decode())).encode()
                writer.write(_HEADER.pack(_COMMAND, len(answer)) + answer)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            log.debug("worker channel: %s", exc)
        finally:
            writer.close()

    def forward_cancel(self, worker: int, pid: int, key: int) -> None:
        task = asyncio.ensure_future(self._send(worker, _CANCEL, struct.pack("!iq", pid, key)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def broadcast(self, command: str, timeout: float) -> list[str]:
        """Run ``command`` on every sibling; their answers (or an error text each)."""
        siblings = [w for w in range(self.workers) if w != self.worker]
        return list(
            await asyncio.gather(
                *(self._send(w, _COMMAND, command.encode(), timeout) for w in siblings)
            )
        )

    async def _send(self, worker: int, kind: bytes, body: bytes, timeout: float = 5.0) -> str:
        path = socket_path(self.port, worker)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), 5)
            writer.write(_HEADER.pack(kind, len(body)) + body)
            await writer.drain()
            if kind != _COMMAND:
                writer.close()
                return "ok"
            _, size = _HEADER.unpack(await asyncio.wait_for(reader.readexactly(5), timeout))
            answer = await asyncio.wait_for(reader.readexactly(size), timeout)
            writer.close()
            return answer.decode()
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.warning("worker %d did not answer: %s", worker, exc)
            return f"error: worker {worker} did not answer ({exc or type(exc).__name__})"
