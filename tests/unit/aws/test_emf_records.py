"""EMF records carry only known values, under a configurable namespace (issue 20).

Each test reproduces a trap of the earlier writer: an empty ``LeaseWaitTime``
array (CloudWatch rejects the record), a ``RemainingConnections`` of 0 written
when the capacity was never seen, and a fixed namespace.
"""

from __future__ import annotations

import io
import uuid

import pytest

import fleetpool
from fleetpool import cloudwatch, metrics
from fleetpool.aws.emf import InvocationMetrics
from tests.emf_check import check_emf, emf_lines


def fresh_budget(limit: int = 1) -> fleetpool.Budget:
    budget = fleetpool.open_budget("memory://", f"m-{uuid.uuid4().hex[:8]}")
    budget.configure(limit=limit)
    return budget


def test_no_empty_wait_array_and_no_record_without_activity() -> None:
    budget = fresh_budget()
    budget.release(budget.acquire(function="api", ttl=30))
    first = budget.metrics.emf_records()
    assert len(first) == 1 and len(check_emf(first[0])["LeaseWaitTime"]) == 1
    # The trap: a second flush wrote the function again with "LeaseWaitTime": [].
    assert budget.metrics.emf_records() == []


def test_a_metric_without_a_wait_has_no_wait_time() -> None:
    budget = fresh_budget()
    budget.metrics.reclaimed("api", 2)  # reclaims are counted without a wait
    (record,) = budget.metrics.emf_records()
    check_emf(record)
    names = {m["Name"] for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert "LeaseWaitTime" not in names and "LeaseWaitTime" not in record
    assert record["ExpiredLeasesReclaimed"] == 2


def test_unknown_remaining_connections_is_left_out_not_zero() -> None:
    m = metrics.BudgetMetrics(f"b-{uuid.uuid4().hex[:8]}", "memory")
    m.failed_open("api")  # a fail-open grant: the store's capacity was never seen
    (record,) = m.emf_records()
    check_emf(record)
    assert "RemainingConnections" not in record  # the old writer said 0 here
    assert record["FailOpenGrants"] == 1
    m.observe_capacity(limit=5, in_use=2)
    m.failed_open("api")
    (record,) = m.emf_records()
    assert record["RemainingConnections"] == 3


def test_namespace_from_argument_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = fresh_budget()
    budget.release(budget.acquire(function="api", ttl=30))
    assert (
        budget.metrics.emf_records(namespace="Shop/Orders")[0]["_aws"]["CloudWatchMetrics"][0][
            "Namespace"
        ]
        == "Shop/Orders"
    )
    monkeypatch.setenv("FLEETPOOL_METRICS_NAMESPACE", "RDSLambda")
    budget.release(budget.acquire(function="api", ttl=30))
    out = io.StringIO()
    metrics.flush_emf(out)
    mine = [r for r in emf_lines(out.getvalue()) if r["Budget"] == budget.name]
    assert mine[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "RDSLambda"
    monkeypatch.delenv("FLEETPOOL_METRICS_NAMESPACE")
    assert cloudwatch.emf_namespace() == "fleetpool"


@pytest.mark.parametrize("bad", ["", "   ", "x" * 256])
def test_a_bad_namespace_is_refused_with_what_is_accepted(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(fleetpool.ConfigError, match="1 to 255 characters"):
        cloudwatch.emf_namespace(bad)
    monkeypatch.setenv("FLEETPOOL_METRICS_NAMESPACE", bad)
    with pytest.raises(fleetpool.ConfigError, match="FLEETPOOL_METRICS_NAMESPACE"):
        InvocationMetrics("emf")


def test_invocation_metrics_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(fleetpool.ConfigError, match="auto, emf, powertools, off"):
        InvocationMetrics("cloudwatch")
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    assert InvocationMetrics("auto").writer() is None  # stdout is not ours off Lambda
    assert InvocationMetrics("off").writer() is None
    assert InvocationMetrics("emf").writer() == "emf"
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-api")
    assert InvocationMetrics("auto").writer() in ("emf", "powertools")


def test_database_rejects_a_bad_metrics_mode() -> None:
    with pytest.raises(fleetpool.ConfigError, match="metrics must be one of"):
        fleetpool.Database("postgresql://app@127.0.0.1/app", metrics="stdout")  # type: ignore[arg-type]
