"""A throwaway redis-server without persistence; freeze it to simulate a silent store."""

from __future__ import annotations

import signal
import socket
from collections.abc import Mapping, Sequence

from .binaries import require_binary
from .processes import ServerError
from .server import Server


class RedisServer(Server):
    """A private redis-server on 127.0.0.1 without persistence (restart empties it).

    ``freeze()``/``thaw()``/``pause(seconds)``/``frozen()`` simulate an unreachable store:
    connections are accepted by the kernel but nothing answers.
    """

    kind = "redis"
    stop_signal = signal.SIGTERM
    death_signal = signal.SIGKILL

    def __init__(
        self,
        port: int | None = None,
        settings: Mapping[str, object] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = require_binary("redis-server")
        super().__init__(port)
        self.settings = dict(settings or {})
        #: Raw command-line arguments, for directives of several words
        #: (``--rename-command FCALL ""``).
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _argv(self) -> list[str]:
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.tmpdir),
            "--daemonize",
            "no",
        ]
        for k, v in self.settings.items():
            argv += [f"--{k}", str(v)]
        return argv + self.extra_args

    def _probe(self) -> None:
        with socket.create_connection((self.host, self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            if not s.recv(64).startswith(b"+PONG"):
                raise ServerError("redis did not answer PING")
