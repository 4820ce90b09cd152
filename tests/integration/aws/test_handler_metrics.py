"""``@db.handler`` writes the budget's metrics once per invocation, with or without
Powertools, and stacks with Powertools' decorators in either order.

Real PostgreSQL (the session's server); the budget lives in memory. The Lambda
context is a plain object with the attributes the runtime passes.
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

import fleetpool
from tests.emf_check import emf_lines


@dataclass
class LambdaContext:
    aws_request_id: str
    function_name: str = "orders-api"
    memory_limit_in_mb: int = 128
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:orders-api"


def ctx() -> LambdaContext:
    return LambdaContext(aws_request_id=str(uuid.uuid4()))


@pytest.fixture
def on_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-api")
    monkeypatch.delenv("FLEETPOOL_METRICS_NAMESPACE", raising=False)
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)


@pytest.fixture
def make_db(pg_dsn: str) -> Iterator[Callable[..., fleetpool.Database]]:
    made: list[fleetpool.Database] = []

    def make(**kwargs: Any) -> fleetpool.Database:
        budget = fleetpool.open_budget("memory://", f"b-{uuid.uuid4().hex[:8]}")
        budget.configure(limit=2)
        kwargs.setdefault("handle_signals", False)
        db = fleetpool.Database(pg_dsn, budget=budget, function="orders-api", **kwargs)
        made.append(db)
        return db

    yield make
    for db in made:
        db.close()


@pytest.fixture
def restore_fleetpool_logger() -> Iterator[None]:
    # share_logger reconfigures the "fleetpool" logger: give other tests theirs back.
    lg = logging.getLogger("fleetpool")
    saved = (list(lg.handlers), lg.propagate, lg.level)
    yield
    lg.handlers, lg.propagate = saved[0], saved[1]
    lg.setLevel(saved[2])


def fleetpool_blobs(text: str, budget: str) -> list[dict[str, Any]]:
    return [r for r in emf_lines(text) if r.get("Budget") == budget]


def test_handler_flushes_each_invocation_even_when_it_raises(
    make_db: Callable[..., fleetpool.Database], on_lambda: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # per_invocation: every invocation takes (and gives back) a lease of its own.
    db = make_db(metrics="emf", metrics_namespace="Orders", mode="per_invocation")
    assert db.budget is not None

    @db.handler
    def handler(event: Any, context: Any) -> int:
        with db.connection() as conn:
            conn.execute("SELECT 1")
        if event.get("fail"):
            raise ValueError("boom")
        return 1

    c1, c2 = ctx(), ctx()
    handler({}, c1)
    first = fleetpool_blobs(capsys.readouterr().out, db.budget.name)
    with pytest.raises(ValueError):
        handler({"fail": True}, c2)
    second = fleetpool_blobs(capsys.readouterr().out, db.budget.name)
    # Before, nothing was written unless the function called flush_emf itself.
    assert len(first) == 1 and len(second) == 1
    (r1,), (r2,) = first, second
    assert r1["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Orders"
    assert r1["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Budget", "Function"], ["Budget"]]
    assert r1["LeaseGrants"] == 1 and r1["RemainingConnections"] == 1
    assert r1["function_request_id"] == c1.aws_request_id
    assert r2["function_request_id"] == c2.aws_request_id and r2["LeaseGrants"] == 1


def test_a_warm_invocation_that_took_no_lease_writes_nothing(
    make_db: Callable[..., fleetpool.Database], on_lambda: None, capsys: pytest.CaptureFixture[str]
) -> None:
    db = make_db(metrics="emf")
    assert db.budget is not None

    @db.handler
    def handler(event: Any, context: Any) -> None:
        with db.connection() as conn:
            conn.execute("SELECT 1")

    handler({}, ctx())
    assert len(fleetpool_blobs(capsys.readouterr().out, db.budget.name)) == 1
    handler({}, ctx())  # warm: the lease is still good, no store call, nothing new
    assert fleetpool_blobs(capsys.readouterr().out, db.budget.name) == []


def test_nothing_is_written_off_lambda_by_default(
    make_db: Callable[..., fleetpool.Database],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    db = make_db()

    @db.handler
    def handler(event: Any, context: Any) -> None:
        with db.connection() as conn:
            conn.execute("SELECT 1")

    handler({}, ctx())
    assert emf_lines(capsys.readouterr().out) == []


def _powertools_stack(
    db: fleetpool.Database, order: str, service: str, stream: io.StringIO
) -> tuple[Callable[[Any, Any], Any], Any]:
    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    from fleetpool.aws.powertools import share_logger

    logger = Logger(service=service, level="INFO", logger_handler=logging.StreamHandler(stream))
    share_logger(logger)
    metrics = Metrics(namespace="App", service=service)

    def body(event: Any, context: Any) -> str:
        metrics.add_metric(name="OrdersPlaced", unit=MetricUnit.Count, value=1)
        with db.connection() as conn:
            return str(conn.execute("SELECT pg_backend_pid()").fetchone()[0])

    inject = logger.inject_lambda_context(correlation_id_path="headers.x_correlation_id")
    if order == "fleetpool-inside":
        handler = inject(metrics.log_metrics(db.handler(body)))
    else:
        handler = db.handler(inject(metrics.log_metrics(body)))
    return handler, metrics


@pytest.mark.parametrize("order", ["fleetpool-inside", "fleetpool-outside"])
def test_powertools_one_blob_each_either_order_and_correlated_logs(
    make_db: Callable[..., fleetpool.Database],
    pg_dsn: str,
    on_lambda: None,
    restore_fleetpool_logger: None,
    capsys: pytest.CaptureFixture[str],
    order: str,
) -> None:
    pytest.importorskip("aws_lambda_powertools")
    db = make_db()  # metrics="auto": on Lambda, Powertools installed
    assert db.metrics.writer() == "powertools"
    assert db.budget is not None
    logs = io.StringIO()
    handler, _ = _powertools_stack(db, order, f"svc-{uuid.uuid4().hex[:6]}", logs)

    pid = handler({"headers": {"x_correlation_id": "corr-1"}}, ctx())
    out = capsys.readouterr().out
    blobs = emf_lines(out)
    mine = [b for b in blobs if b.get("Budget") == db.budget.name]
    app = [b for b in blobs if b["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "App"]
    assert len(mine) == 1 and len(app) == 1 and len(blobs) == 2  # no double flush
    (blob,) = mine
    directive = blob["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "fleetpool"
    assert directive["Dimensions"] == [["Budget", "Function"], ["Budget"]]
    # Powertools writes every value as a list of observations.
    assert blob["LeaseGrants"] == [1.0] and blob["Function"] == "orders-api"
    assert blob["correlation_id"] == "corr-1"
    # The application's blob has only its own metric and dimensions.
    assert "Budget" not in app[0] and "LeaseGrants" not in app[0]
    assert app[0]["OrdersPlaced"] == [1.0]

    # The server drops the session between invocations: fleetpool logs the reconnect,
    # and the line is the application's JSON with its correlation id.
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (int(pid),))
        for _ in range(200):  # bounded: until the backend is gone (about 10 s at most)
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (int(pid),)
            ).fetchone()
            if row is not None and row[0] == 0:
                break
            time.sleep(0.05)
        time.sleep(0.05)  # and its goodbye has reached the client's socket
    handler({"headers": {"x_correlation_id": "corr-2"}}, ctx())
    capsys.readouterr()
    lines = [line for line in logs.getvalue().splitlines() if "reconnecting" in line]
    assert lines, logs.getvalue()
    entry = json.loads(lines[-1])
    assert entry["correlation_id"] == "corr-2"
    assert entry["name"].startswith("fleetpool")
    assert entry["function_name"] == "orders-api"
