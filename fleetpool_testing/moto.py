"""moto's server mode, standing in for AWS APIs (DynamoDB, Secrets Manager, ...) in tests."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any, ClassVar, Self

from .processes import HOST, READY_TIMEOUT, ServerError


class MotoServer:
    """moto's server mode on 127.0.0.1, standing in for DynamoDB, Secrets Manager & co.

    It runs in a thread of this process. ``env`` holds fake credentials; ``apply_env()``
    puts them in ``os.environ`` (for boto3 here and in subprocesses) until exit.
    """

    env: ClassVar[dict[str, str]] = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    region = "us-east-1"

    def __init__(self, port: int | None = None) -> None:
        self.host = HOST
        self.port = port or 0
        self._server: Any = None

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise ServerError("MotoServer is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        if self._server is not None:
            return self
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request to stderr unless its logger has a level.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        server.start()
        self.port = int(server.get_host_and_port()[1])
        self._server = server
        atexit.register(self.stop)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError as e:
                if time.monotonic() > deadline:
                    raise ServerError(f"moto on {self.endpoint_url} not ready: {e!r}") from e
                time.sleep(0.05)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    close = stop

    def reset(self) -> None:
        """Forget every resource (all services)."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    @contextlib.contextmanager
    def apply_env(self) -> Iterator[None]:
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` pointed at this server with fake credentials."""
        import boto3

        kwargs.setdefault("region_name", self.region)
        kwargs.setdefault("aws_access_key_id", self.env["AWS_ACCESS_KEY_ID"])
        kwargs.setdefault("aws_secret_access_key", self.env["AWS_SECRET_ACCESS_KEY"])
        kwargs.setdefault("aws_session_token", self.env["AWS_SESSION_TOKEN"])
        return boto3.client(service, endpoint_url=self.endpoint_url, **kwargs)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
