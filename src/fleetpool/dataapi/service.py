# Strategy: the five operations of the RDS Data API as plain async methods taking the
# decoded JSON body and returning the JSON response -- no HTTP in here, so the server
# (and any other front end) only parses, authenticates and writes. Every statement runs
# under one guard (_run) that applies the statement timeout, honours
# continueAfterTimeout, and cleans up when the client goes away mid-statement: the
# statement is stopped, an autocommit connection is returned or discarded, and a
# transaction is rolled back and its id retired with the reason.
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import DataApiError
from .config import DataApiConfig
from .protocol import (
    ResultOptions,
    api_error,
    bind,
    decode_parameters,
    field_of,
    json_of,
    optional,
    require,
    result_options,
    to_pyformat,
)
from .sources import ConnectionSource, Outcome, Session, source_for
from .transactions import Transaction, TransactionTable, expired

log = logging.getLogger("fleetpool.dataapi")

T = TypeVar("T")
_ROLLBACK_TIMEOUT = 5.0


@dataclass(slots=True)
class Timing:
    """Seconds one request spent waiting for a connection and in the database."""

    wait: float = 0.0
    db: float = 0.0


class DataApiService:
    def __init__(self, cfg: DataApiConfig, sources: list[ConnectionSource] | None = None) -> None:
        self.cfg = cfg
        self.sources = sources or [
            source_for(d.target, cfg.pool_size, cfg.connect_timeout) for d in cfg.databases
        ]
        if len(self.sources) != len(cfg.databases):
            raise ValueError("one connection source per configured database")
        self.transactions = TransactionTable()
        self._janitor: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self.operations: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
            "ExecuteStatement": self.execute_statement,
            "BatchExecuteStatement": self.batch_execute_statement,
            "BeginTransaction": self.begin_transaction,
            "CommitTransaction": self.commit_transaction,
            "RollbackTransaction": self.rollback_transaction,
        }

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        opened: list[ConnectionSource] = []
        try:
            for source in self.sources:
                await source.open()
                opened.append(source)
        except BaseException:
            for source in opened:
                await source.close()
            raise
        self._janitor = asyncio.create_task(self._janitor_loop(), name="data-api-janitor")

    async def stop(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
        for tx_id in list(self.transactions.live):
            await self._abort(tx_id, "was rolled back because the Data API stopped")
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(self._background, timeout=_ROLLBACK_TIMEOUT)
        for source in self.sources:
            await source.close()

    async def _janitor_loop(self) -> None:
        period = min(1.0, self.cfg.transaction_idle_timeout / 4)
        while True:
            await asyncio.sleep(period)
            self.expire(time.monotonic())

    def expire(self, now: float) -> list[str]:
        """Roll back (in the background) every transaction that is over at ``now``."""
        cfg = self.cfg
        ended = []
        for tx_id, reason in expired(
            self.transactions.live, now, cfg.transaction_idle_timeout, cfg.transaction_max_lifetime
        ):
            ended.append(tx_id)
            self._spawn(self._abort(tx_id, reason))
        return ended

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------- routing

    def _database(self, body: Mapping[str, Any]) -> int:
        resource = require(body, "resourceArn", str, "the ARN of the database cluster")
        secret = require(body, "secretArn", str, "the ARN of the secret with credentials")
        dbs = self.cfg.databases
        if len(dbs) == 1 and not dbs[0].resource_arn:
            index = 0
        else:
            index = next((i for i, d in enumerate(dbs) if d.resource_arn == resource), -1)
            if index < 0:
                raise api_error(
                    "DatabaseNotFoundException",
                    f"resourceArn {resource} is not served by this endpoint",
                )
        db = dbs[index]
        if db.secret_arn and secret != db.secret_arn:
            raise api_error(
                "AccessDeniedException", f"secretArn {secret} does not grant access to {resource}"
            )
        name = optional(body, "database", str, "a database name")
        if name and name != db.database:
            raise api_error(
                "BadRequestException",
                f"database {name!r} is not served by {resource}; it serves {db.database!r}",
            )
        return index

    async def call(
        self, operation: str, body: Mapping[str, Any], owner: str, timing: Timing
    ) -> dict[str, Any]:
        return await self.operations[operation](body, owner, timing)

    # ------------------------------------------------------------- statements

    async def _borrow(self, source: ConnectionSource, timing: Timing) -> Session:
        started = time.perf_counter()
        try:
            return await source.borrow(self.cfg.borrow_timeout)
        finally:
            timing.wait += time.perf_counter() - started

    async def _run(
        self,
        session: Session,
        work: Callable[[Session], Awaitable[T]],
        timing: Timing,
        keep_running: bool = False,
        when_done: Callable[[], None] | None = None,
    ) -> T:
        """Run ``work`` under the statement timeout. With ``keep_running``
        (continueAfterTimeout) a statement past the timeout goes on in the background
        and ``when_done`` runs when it ends; the caller must not release the session."""
        started = time.perf_counter()
        limit = self.cfg.statement_timeout
        try:
            if not keep_running:
                try:
                    async with asyncio.timeout(limit):
                        return await work(session)
                except TimeoutError:
                    await session.interrupted()
                    raise api_error(
                        "StatementTimeoutException",
                        f"the statement ran longer than {limit:g} s and was cancelled",
                        connection_id=session.connection_id,
                    ) from None
            task = asyncio.ensure_future(work(session))
            try:
                done, _ = await asyncio.wait({task}, timeout=limit)
            except asyncio.CancelledError:
                self._hand_off(session, task, when_done)  # the client left; it goes on
                raise
            if done:
                return task.result()
            self._hand_off(session, task, when_done)
            raise api_error(
                "StatementTimeoutException",
                f"the statement is still running after {limit:g} s (continueAfterTimeout); "
                "its connection is released when it ends",
                connection_id=session.connection_id,
            )
        except asyncio.CancelledError:
            if not session.handed_off:
                await _shielded(session.interrupted())
            raise
        finally:
            timing.db += time.perf_counter() - started

    def _hand_off(
        self, session: Session, task: asyncio.Future[Any], when_done: Callable[[], None] | None
    ) -> None:
        """Let a continueAfterTimeout statement finish in the background; the session
        belongs to it (``handed_off``) until then, and ``when_done`` releases it."""
        session.handed_off = True

        def done(_task: asyncio.Future[Any]) -> None:
            session.handed_off = False
            if when_done is not None:
                when_done()

        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(done)
        task.add_done_callback(_consume)

    def _bind(
        self, source: ConnectionSource, sql: str, values: dict[str, Any]
    ) -> tuple[str, dict[str, Any] | None]:
        if not values:
            return sql, None  # no parameters: the SQL goes as written ("%" untouched)
        named = to_pyformat(sql, source.engine)
        return named.text, bind(named, values)

    async def execute_statement(
        self, body: Mapping[str, Any], owner: str, timing: Timing
    ) -> dict[str, Any]:
        index = self._database(body)
        sql = require(body, "sql", str, "the SQL statement to run")
        values = decode_parameters(body.get("parameters"))
        opts = result_options(body.get("resultSetOptions"))
        fmt = body.get("formatRecordsAs") or "NONE"
        if fmt not in ("NONE", "JSON"):
            raise api_error("BadRequestException", "formatRecordsAs must be NONE or JSON")
        keep_running = bool(body.get("continueAfterTimeout"))
        tx_id = optional(body, "transactionId", str, "a transaction id")
        source = self.sources[index]
        text, params = self._bind(source, sql, values)
        limit = self.cfg.max_response_bytes

        async def work(session: Session) -> Outcome:
            return await session.run(text, params, limit)

        if tx_id:
            outcome = await self._in_transaction(tx_id, owner, index, work, timing, keep_running)
        else:
            outcome = await self._autocommit(source, work, timing, keep_running)
        return self._response(
            outcome, source, bool(body.get("includeResultMetadata")), fmt == "JSON", opts
        )

    async def _autocommit(
        self,
        source: ConnectionSource,
        work: Callable[[Session], Awaitable[T]],
        timing: Timing,
        keep_running: bool = False,
    ) -> T:
        session = await self._borrow(source, timing)

        def release() -> None:
            self._spawn(source.give_back(session))

        try:
            return await self._run(session, work, timing, keep_running, release)
        finally:
            if not session.handed_off:
                # Returned by a task of its own: a disconnect (cancellation) arriving
                # now cannot interrupt the return, and the response need not wait.
                release()

    async def _in_transaction(
        self,
        tx_id: str,
        owner: str,
        index: int,
        work: Callable[[Session], Awaitable[T]],
        timing: Timing,
        keep_running: bool = False,
    ) -> T:
        tx = self.transactions.get(tx_id, owner)
        if tx.database != index:
            raise api_error(
                "BadRequestException", f"Transaction {tx_id} belongs to another resourceArn"
            )
        tx.busy += 1

        def finish() -> None:
            tx.busy -= 1
            tx.last_used = time.monotonic()
            tx.lock.release()

        try:
            await tx.lock.acquire()
        except BaseException:
            tx.busy -= 1
            raise
        try:
            if self.transactions.live.get(tx_id) is not tx:
                raise self.transactions.not_found(tx_id)
            try:
                return await self._run(tx.session, work, timing, keep_running, finish)
            except DataApiError:
                if tx.session.broken:
                    self.transactions.end(tx_id, "was rolled back: its connection was lost")
                    await _shielded(tx.source.give_back(tx.session))
                raise
            except asyncio.CancelledError:
                # A client gone mid-statement: stop it and roll back. (One that asked for
                # continueAfterTimeout leaves its statement running; the transaction
                # then ends by commit, rollback or the idle timeout as usual.)
                if not tx.session.handed_off:
                    await _shielded(
                        self._end(
                            tx,
                            "was rolled back because its client disconnected during a statement",
                            rollback=True,
                        )
                    )
                raise
        finally:
            if not tx.session.handed_off:
                finish()

    async def _end(self, tx: Transaction, reason: str, rollback: bool) -> None:
        """Retire ``tx`` (rolling it back first when asked) and return its connection."""
        self.transactions.end(tx.id, reason)
        session = tx.session
        if rollback and not session.broken:
            try:
                async with asyncio.timeout(_ROLLBACK_TIMEOUT):
                    await session.rollback()
            except (DataApiError, TimeoutError) as exc:
                log.warning("data API: rollback of transaction failed (%s); discarding", exc)
                session.broken = True
        await tx.source.give_back(session)

    async def _abort(self, tx_id: str, reason: str) -> None:
        tx = self.transactions.live.get(tx_id)
        if tx is None:
            return
        async with tx.lock:
            if self.transactions.live.get(tx_id) is tx:
                await self._end(tx, reason, rollback=True)

    # ------------------------------------------------------------- batch, transactions

    async def batch_execute_statement(
        self, body: Mapping[str, Any], owner: str, timing: Timing
    ) -> dict[str, Any]:
        index = self._database(body)
        sql = require(body, "sql", str, "the SQL statement to run")
        sets = optional(body, "parameterSets", list, "a list of parameter lists") or []
        source = self.sources[index]
        decoded = [decode_parameters(s) for s in sets]
        if decoded and any(decoded):
            named = to_pyformat(sql, source.engine)
            text, bound = named.text, [bind(named, values) for values in decoded]
        else:
            text, bound = sql, []
        limit = self.cfg.max_response_bytes

        async def many(session: Session) -> list[Outcome]:
            if not bound:
                await session.run(text, None, limit)
                return []
            return await session.run_many(text, bound, limit)

        tx_id = optional(body, "transactionId", str, "a transaction id")
        if tx_id:
            outcomes = await self._in_transaction(tx_id, owner, index, many, timing)
        else:

            async def atomic(session: Session) -> list[Outcome]:
                # Without a transaction the batch is still all-or-nothing.
                await session.begin()
                try:
                    result = await many(session)
                except BaseException:
                    with contextlib.suppress(DataApiError):
                        await session.rollback()
                    raise
                await session.commit()
                return result

            outcomes = await self._autocommit(source, atomic, timing)
        return {
            "updateResults": [
                {"generatedFields": _generated(outcome, source)} for outcome in outcomes
            ]
        }

    async def begin_transaction(
        self, body: Mapping[str, Any], owner: str, timing: Timing
    ) -> dict[str, Any]:
        index = self._database(body)
        source = self.sources[index]
        session = await self._borrow(source, timing)
        try:
            await self._run(session, lambda s: s.begin(), timing)
        except BaseException:
            await _shielded(source.give_back(session))
            raise
        now = time.monotonic()
        tx = Transaction(
            TransactionTable.new_id(), owner, index, source, session, started=now, last_used=now
        )
        self.transactions.add(tx)
        return {"transactionId": tx.id}

    async def _finish(
        self, body: Mapping[str, Any], owner: str, timing: Timing, commit: bool
    ) -> dict[str, Any]:
        self._database(body)
        tx_id = require(body, "transactionId", str, "the id BeginTransaction returned")
        tx = self.transactions.get(tx_id, owner)
        async with tx.lock:
            if self.transactions.live.get(tx_id) is not tx:
                raise self.transactions.not_found(tx_id)
            self.transactions.end(
                tx_id, "was already committed" if commit else "was already rolled back"
            )
            try:
                await self._run(
                    tx.session,
                    (lambda s: s.commit()) if commit else (lambda s: s.rollback()),
                    timing,
                )
            except BaseException:
                tx.session.broken = True  # outcome unknown: never reuse this connection
                raise
            finally:
                await _shielded(tx.source.give_back(tx.session))
        return {"transactionStatus": "Transaction Committed" if commit else "Rollback Complete"}

    async def commit_transaction(
        self, body: Mapping[str, Any], owner: str, timing: Timing
    ) -> dict[str, Any]:
        return await self._finish(body, owner, timing, commit=True)

    async def rollback_transaction(
        self, body: Mapping[str, Any], owner: str, timing: Timing
    ) -> dict[str, Any]:
        return await self._finish(body, owner, timing, commit=False)

    # ------------------------------------------------------------- responses

    def _response(
        self,
        outcome: Outcome,
        source: ConnectionSource,
        metadata: bool,
        as_json: bool,
        opts: ResultOptions,
    ) -> dict[str, Any]:
        response: dict[str, Any] = {
            "numberOfRecordsUpdated": outcome.rowcount,
            "generatedFields": _generated(outcome, source),
        }
        columns = outcome.columns
        if columns is None:
            return response
        if as_json:
            names = [c.name for c in columns]
            response["formattedRecords"] = json.dumps(
                [
                    {n: json_of(v, opts) for n, v in zip(names, row, strict=True)}
                    for row in outcome.rows
                ],
                separators=(",", ":"),
            )
        else:
            response["records"] = [[field_of(v, opts) for v in row] for row in outcome.rows]
        if metadata:
            response["columnMetadata"] = [
                {
                    "name": c.name,
                    "label": c.name,
                    "type": c.jdbc_type,
                    "typeName": c.type_name,
                    "precision": c.precision,
                    "scale": c.scale,
                    "nullable": c.nullable,
                    "isSigned": c.signed,
                    "isAutoIncrement": False,
                    "isCaseSensitive": c.jdbc_type in (1, 12, -1),
                    "isCurrency": False,
                    "arrayBaseColumnType": c.array_base,
                    "schemaName": "",
                    "tableName": "",
                }
                for c in columns
            ]
        return response

    def stats(self) -> dict[str, Any]:
        return {
            "transactions": len(self.transactions.live),
            "background_statements": len(self._background),
            "sources": [s.stats() for s in self.sources],
        }


def _generated(outcome: Outcome, source: ConnectionSource) -> list[dict[str, Any]]:
    # MySQL reports AUTO_INCREMENT values; PostgreSQL users write RETURNING instead.
    if outcome.last_insert_id and source.engine == "mysql":
        return [{"longValue": outcome.last_insert_id}]
    return []


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # a background statement's error is not the caller's any more


async def _shielded(coro: Awaitable[Any]) -> None:
    """Run clean-up to completion even if our task is being cancelled."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await task
        raise
