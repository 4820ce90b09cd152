"""A small client for fleetpool's Data API (SQL over HTTP): less than boto3, core only.

Strategy: a function that talks HTTP holds no database connection, so a frozen or killed
container leaves nothing behind on the database. This client is what such a function
deploys: the standard library only (``http.client`` over one keep-alive connection,
SigV4 signing from ``fleetpool.dataapi.sigv4`` -- the same code the server verifies
with), a DB-API-like ``execute`` and a ``transaction()`` context manager. It sends the
RDS Data API's JSON, so it also works against any endpoint that speaks it.

Keep-alive connections die on the server after its idle timeout (75 s by default) and
while a Lambda container is frozen; a statement is never retried behind the caller's
back (it may have run), so instead the client reconnects *before* sending when the
connection has been idle longer than ``idle_reconnect`` seconds.

    db = fleetpool.http.connect("http://127.0.0.1:8080", access_key="ID", secret_key="S")
    rows = db.execute("SELECT name FROM users WHERE id = :id", {"id": 7}).fetchall()
    with db.transaction() as tx:
        tx.execute("UPDATE users SET seen = now() WHERE id = :id", {"id": 7})
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import ssl
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from .dataapi import sigv4
from .dataapi.protocol import (
    ERROR_STATUS,
    PATHS,
    parameter_of,
    python_of,
    token_credentials,
)
from .errors import ConfigError, DataApiError, UnavailableError

DEFAULT_ARN = "arn:aws:rds:us-east-1:000000000000:cluster:fleetpool"
DEFAULT_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:fleetpool"


def _time(text: str) -> Any:
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        return text  # MySQL TIME beyond 24 h or negative: keep the text


# Column typeName -> how its string values become Python values.
_CONVERT: dict[str, Any] = {
    "numeric": Decimal,
    "decimal": Decimal,
    "date": dt.date.fromisoformat,
    "timestamp": dt.datetime.fromisoformat,
    "timestamptz": lambda s: dt.datetime.fromisoformat(s).replace(tzinfo=dt.UTC),
    "datetime": dt.datetime.fromisoformat,
    "time": _time,
    "uuid": uuid.UUID,
}


class Result:
    """One statement's outcome, read like a DB-API cursor."""

    def __init__(self, response: Mapping[str, Any]) -> None:
        meta = response.get("columnMetadata") or []
        self.columns: list[str] = [c.get("name", "") for c in meta]
        self.type_names: list[str] = [c.get("typeName", "") for c in meta]
        converters = [_CONVERT.get(t) for t in self.type_names]
        self.rows: list[tuple[Any, ...]] = []
        for record in response.get("records") or []:
            row = []
            for i, field in enumerate(record):
                value = python_of(field)
                convert = converters[i] if i < len(converters) else None
                if convert is not None and isinstance(value, str):
                    value = convert(value)
                row.append(value)
            self.rows.append(tuple(row))
        self.rowcount: int = int(response.get("numberOfRecordsUpdated", 0))
        if meta and not self.rowcount:
            self.rowcount = len(self.rows)
        self.generated: list[Any] = [python_of(f) for f in response.get("generatedFields") or []]
        self._next = 0

    @property
    def description(self) -> list[tuple[str, str, None, None, None, None, None]] | None:
        if not self.columns:
            return None
        return [
            (n, t, None, None, None, None, None)
            for n, t in zip(self.columns, self.type_names, strict=True)
        ]

    @property
    def lastrowid(self) -> Any:
        return self.generated[0] if self.generated else None

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._next >= len(self.rows):
            return None
        self._next += 1
        return self.rows[self._next - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rest = self.rows[self._next :]
        self._next = len(self.rows)
        return rest

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row


class Cursor:
    """The DB-API cursor shape over :meth:`Connection.execute` (for code written to it)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.result: Result | None = None

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Cursor:
        self.result = self.conn.execute(sql, params)
        return self

    @property
    def description(self) -> list[tuple[str, str, None, None, None, None, None]] | None:
        return self.result.description if self.result else None

    @property
    def rowcount(self) -> int:
        return self.result.rowcount if self.result else -1

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.result.fetchone() if self.result else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.result.fetchall() if self.result else []

    def close(self) -> None:
        self.result = None


class Connection:
    """A keep-alive HTTP connection to a Data API endpoint. Not thread-safe."""

    def __init__(
        self,
        url: str,
        *,
        access_key: str = "",
        secret_key: str = "",
        token: str = "",
        region: str = "us-east-1",
        resource_arn: str = DEFAULT_ARN,
        secret_arn: str = DEFAULT_SECRET_ARN,
        database: str | None = None,
        timeout: float = 60.0,
        idle_reconnect: float = 50.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"Data API url {url!r}: expected http(s)://host:port")
        if token:
            try:
                access_key, secret_key = token_credentials(token)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if not access_key or not secret_key:
            raise ConfigError("Data API: give access_key and secret_key, or a fleetpool token")
        if not timeout > 0:
            raise ConfigError("Data API: timeout must be a positive number of seconds")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.host_header = parts.netloc.rpartition("@")[2]
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.base = {"resourceArn": resource_arn, "secretArn": secret_arn}
        if database:
            self.base["database"] = database
        self.timeout = timeout
        self.idle_reconnect = idle_reconnect
        self.ssl_context = ssl_context
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0
        self.transaction_id: str | None = None

    # ------------------------------------------------------------- transport

    def _connection(self) -> http.client.HTTPConnection:
        now = time.monotonic()
        if self._conn is not None and now - self._last_used > self.idle_reconnect:
            self._conn.close()  # the server (or a freeze) has likely dropped it
            self._conn = None
        if self._conn is None:
            if self.scheme == "https":
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=self.ssl_context
                )
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def call(self, operation: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Send one API operation; return its JSON response or raise DataApiError."""
        payload = json.dumps({**self.base, **body}, separators=(",", ":")).encode()
        path = PATHS[operation]
        headers = {"Host": self.host_header, "Content-Type": "application/json"}
        headers.update(
            sigv4.sign(
                "POST",
                path,
                headers,
                payload,
                key_id=self.access_key,
                secret=self.secret_key,
                region=self.region,
                now=time.time(),
            )
        )
        conn = self._connection()
        try:
            conn.request("POST", path, payload, headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self._conn = None
            raise UnavailableError(
                f"Data API {self.scheme}://{self.host_header}{path} failed: {exc!r}"
            ) from exc
        self._last_used = time.monotonic()
        if response.will_close:
            conn.close()
            self._conn = None
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {"message": data[:200].decode(errors="replace")}
        if response.status == 200:
            return decoded  # type: ignore[no-any-return]
        code = (response.getheader("x-amzn-ErrorType") or decoded.get("__type") or "").split(":")[0]
        code = code or "InternalServerErrorException"
        raise DataApiError(
            decoded.get("message", f"HTTP {response.status}"),
            code,
            ERROR_STATUS.get(code, response.status),
            connection_id=decoded.get("dbConnectionId"),
        )

    # ------------------------------------------------------------- statements

    def execute(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        continue_after_timeout: bool = False,
    ) -> Result:
        """Run one statement (``:name`` parameters); inside ``transaction()`` it joins it."""
        body: dict[str, Any] = {"sql": sql, "includeResultMetadata": True}
        if params:
            body["parameters"] = [parameter_of(k, v) for k, v in params.items()]
        if continue_after_timeout:
            body["continueAfterTimeout"] = True
        if self.transaction_id:
            body["transactionId"] = self.transaction_id
        return Result(self.call("ExecuteStatement", body))

    def executemany(self, sql: str, seq_of_params: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Run one statement per parameter set, all-or-nothing; returns generated ids."""
        body: dict[str, Any] = {
            "sql": sql,
            "parameterSets": [[parameter_of(k, v) for k, v in p.items()] for p in seq_of_params],
        }
        if self.transaction_id:
            body["transactionId"] = self.transaction_id
        results = self.call("BatchExecuteStatement", body).get("updateResults") or []
        return [
            python_of(r["generatedFields"][0]) if r.get("generatedFields") else None
            for r in results
        ]

    # ------------------------------------------------------------- transactions

    def begin(self) -> str:
        if self.transaction_id:
            raise DataApiError("a transaction is already open on this connection")
        self.transaction_id = self.call("BeginTransaction", {})["transactionId"]
        return self.transaction_id

    def commit(self) -> None:
        tx_id, self.transaction_id = self.transaction_id, None
        if tx_id:
            self.call("CommitTransaction", {"transactionId": tx_id})

    def rollback(self) -> None:
        tx_id, self.transaction_id = self.transaction_id, None
        if tx_id:
            self.call("RollbackTransaction", {"transactionId": tx_id})

    def cursor(self) -> Cursor:
        return Cursor(self)

    def transaction(self) -> Transaction:
        """``with conn.transaction() as tx:`` commits on success, rolls back on error."""
        return Transaction(self)

    # ------------------------------------------------------------- lifecycle

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Transaction:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __enter__(self) -> Connection:
        self.conn.begin()
        return self.conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.conn.commit()
            return
        try:
            self.conn.rollback()
        except (DataApiError, UnavailableError):
            pass  # the original error matters more; the server rolls back on its own too


def connect(url: str, **kwargs: Any) -> Connection:
    """Open a Data API client (the HTTP connection itself opens on first use)."""
    return Connection(url, **kwargs)


__all__ = ["Connection", "Cursor", "Result", "Transaction", "connect"]
