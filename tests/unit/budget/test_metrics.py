"""Budget metrics: the seed's names, Prometheus export and EMF log lines."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import fleetpool
from fleetpool import metrics


def fresh_budget(limit: int = 1) -> fleetpool.Budget:
    budget = fleetpool.open_budget("memory://", f"m-{uuid.uuid4().hex[:8]}")
    budget.configure(limit=limit)
    return budget


def test_emf_lines_carry_the_seed_metrics() -> None:
    budget = fresh_budget()
    lease = budget.acquire(function="api", ttl=30)
    with pytest.raises(fleetpool.NoConnectionsLeft):
        budget.acquire(function="api", ttl=30, wait=0.05)
    budget.release(lease)
    out = io.StringIO()
    metrics.flush_emf(out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    mine = [r for r in records if r["Budget"] == budget.name]
    assert len(mine) == 1
    record = mine[0]
    names = {m["Name"] for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"RemainingConnections", "NoConnectionsLeftError"} <= names
    assert record["NoConnectionsLeftError"] == 1
    assert record["LeaseGrants"] == 1
    assert record["Function"] == "api"
    assert len(record["LeaseWaitTime"]) == 2
    # Deltas: a second flush reports nothing new for this budget.
    out2 = io.StringIO()
    metrics.flush_emf(out2)
    again = [json.loads(x) for x in out2.getvalue().splitlines()]
    assert all(r["NoConnectionsLeftError"] == 0 for r in again if r["Budget"] == budget.name)


def test_prometheus_export() -> None:
    budget = fresh_budget(limit=2)
    lease = budget.acquire(function="jobs", ttl=30)
    registry = CollectorRegistry()
    metrics.register_prometheus(registry)
    metrics.register_prometheus(registry)  # idempotent
    text = generate_latest(registry).decode()
    assert f'fleetpool_budget_grants_total{{budget="{budget.name}",function="jobs"}} 1.0' in text
    assert f'fleetpool_budget_remaining_connections{{budget="{budget.name}"}} 1.0' in text
    assert "fleetpool_budget_wait_seconds_bucket" in text
    budget.release(lease)


def test_expired_leases_are_counted_as_reclaimed() -> None:
    budget = fresh_budget(limit=1)
    budget.acquire(function="api", ttl=0.05)
    import time

    time.sleep(0.1)
    lease = budget.acquire(function="api", ttl=30)
    stats = budget.metrics.functions()["api"]
    assert stats.reclaimed == 1
    budget.release(lease)
