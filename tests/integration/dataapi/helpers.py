"""Helpers for the Data API tests: a real endpoint in a thread, raw signed requests,
and reading the database through its own driver."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from fleetpool.dataapi import sigv4
from fleetpool.dataapi.config import DataApiConfig
from fleetpool.dataapi.server import DataApiServer
from fleetpool.proxy.runner import new_event_loop

KEY_ID = "AKIDFLEETPOOLTEST"
SECRET = "test-secret-key"
REGION = "us-east-1"
ARN = "arn:aws:rds:us-east-1:123456789012:cluster:fleetpool-test"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:fleetpool-test"
ARNS = {"resourceArn": ARN, "secretArn": SECRET_ARN}


@dataclass
class ApiHandle:
    server: DataApiServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    engine: str
    dsn: str

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, key_id: str = KEY_ID, secret: str = SECRET, **config: Any) -> Any:
        """An unmodified boto3 rds-data client (no retries: tests see every error)."""
        return boto3.client(
            "rds-data",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, **config),
        )

    def call(self, fn: Callable[[], Any]) -> Any:
        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(10)

    def stop(self) -> None:
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.stop(2.0), self.loop).result(30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def start_server(cfg: DataApiConfig, engine: str, dsn: str, service: Any = None) -> ApiHandle:
    loop = new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True, name="fleetpool-data-api")
    thread.start()

    async def make() -> DataApiServer:
        server = DataApiServer(cfg, service)
        await server.start()
        return server

    try:
        server = asyncio.run_coroutine_threadsafe(make(), loop).result(60)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        raise
    return ApiHandle(server, loop, thread, engine, dsn)


def signed_request(
    url: str,
    operation_path: str,
    body: dict[str, Any],
    *,
    key_id: str = KEY_ID,
    secret: str = SECRET,
    now: float | None = None,
    sign: bool = True,
) -> bytes:
    """The raw bytes of a signed HTTP/1.1 request (for tests that need the socket)."""
    netloc = urlsplit(url).netloc
    payload = json.dumps(body).encode()
    headers = {"Host": netloc, "Content-Type": "application/json"}
    if sign:
        headers.update(
            sigv4.sign(
                "POST",
                operation_path,
                headers,
                payload,
                key_id=key_id,
                secret=secret,
                region=REGION,
                now=time.time() if now is None else now,
            )
        )
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST {operation_path} HTTP/1.1\r\n{head}Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )


def raw_exchange(url: str, data: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read one response: (status, lower-case headers, body)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(data)
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, headers, body


def db_rows(engine: str, dsn: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` read through the database's own driver (not the Data API)."""
    if engine == "postgresql":
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
    import pymysql

    from fleetpool.client.dsn import parse_dsn

    t = parse_dsn(dsn)
    conn = pymysql.connect(
        host=t.host or "127.0.0.1",
        port=t.port,
        user=t.user or "root",
        password=t.password or "",
        database=t.database,
        autocommit=True,
        connect_timeout=10,
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()
