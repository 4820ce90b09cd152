"""The drop-in for the AWS sample's helper, against DynamoDB on moto's server mode.

Its documented events and answers, the sample's metrics (validated EMF), and the
case the sample's counter gets wrong: a caller that never gives its slot back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import fleetpool
from fleetpool.aws import helper as helper_module
from fleetpool.aws.emf import InvocationMetrics
from fleetpool.aws.helper import NO_CONNECTIONS_LEFT, REMAINING, Helper
from tests.emf_check import emf_lines


@dataclass
class Context:
    aws_request_id: str


@pytest.fixture
def store(moto_endpoint: str, unique_name: str) -> str:
    return f"dynamodb://{unique_name}?region=us-east-1&endpoint_url={moto_endpoint}"


def configure(store: str, database: str, limit: int) -> None:
    with fleetpool.open_budget(store, database) as budget:
        budget.configure(limit=limit)


def make_helper(store: str, **kwargs: Any) -> Helper:
    return Helper(store, metrics=InvocationMetrics("emf"), **kwargs)


def sample_blobs(text: str, database: str) -> list[dict[str, Any]]:
    return [r for r in emf_lines(text) if r.get("DBName") == database]


def test_sample_events_and_answers(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure(store, "MySQL", limit=2)
    helper = make_helper(store)
    take = {"incrementCounter": True, "RDBMSName": "MySQL"}
    give = {"incrementCounter": "False", "RDBMSName": "MySQL"}  # the sample's callers send strings
    assert helper(take, Context("r1")) is True
    assert helper({"incrementCounter": "True", "RDBMSName": "MySQL"}, Context("r2")) is True
    assert helper(take, Context("r3")) is False  # no connections left: answered at once
    assert helper(give, Context("r4")) is True
    assert helper(take, Context("r5")) is True
    assert helper(give, Context("r6")) is True
    assert helper(give, Context("r7")) is True
    assert helper(give, Context("r8")) is False  # nothing held any more

    blobs = sample_blobs(capsys.readouterr().out, "MySQL")
    assert len(blobs) == 8  # one per call
    for blob in blobs:
        directive = blob["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "RDSLambda"
        assert directive["Dimensions"] == [["DBName"]]
        assert {m["Name"] for m in directive["Metrics"]} == {REMAINING, NO_CONNECTIONS_LEFT}
    assert [b[REMAINING] for b in blobs] == [1, 0, 0, 1, 0, 1, 2, 2]
    assert [b[NO_CONNECTIONS_LEFT] for b in blobs] == [0, 0, 1, 0, 0, 0, 0, 0]


def test_fleetpools_own_metrics_are_published_too(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(store, "orders-db", limit=1)
    helper = make_helper(store)
    helper({"incrementCounter": True, "RDBMSName": "orders-db"}, Context("r1"))
    helper({"incrementCounter": True, "RDBMSName": "orders-db"}, Context("r2"))
    own = [r for r in emf_lines(capsys.readouterr().out) if r.get("Budget") == "orders-db"]
    assert [r["_aws"]["CloudWatchMetrics"][0]["Namespace"] for r in own] == ["fleetpool"] * 2
    assert own[0]["LeaseGrants"] == 1 and own[0]["Function"] == "helper"
    assert own[1]["NoConnectionsLeftError"] == 1 and own[1]["RemainingConnections"] == 0


def test_a_caller_that_never_releases_gets_its_slot_back_after_the_ttl(store: str) -> None:
    configure(store, "MySQL", limit=1)
    helper = make_helper(store, ttl=1.0)
    take = {"incrementCounter": True, "RDBMSName": "MySQL"}
    assert helper(take, Context("crashed-caller")) is True  # ... and never calls back
    assert helper(take, Context("next")) is False  # the slot is in use
    # The sample's counter would now refuse forever; the lease expires instead.
    deadline = time.monotonic() + 10
    granted = False
    while not granted and time.monotonic() < deadline:
        time.sleep(0.25)
        granted = helper(take, Context("later"))
    assert granted
    with fleetpool.open_budget(store, "MySQL") as budget:
        holders = [lease.holder for lease in budget.leases()]
    assert holders == ["helper:later"]


def test_fleetpool_shape_names_the_lease(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure(store, "orders-db", limit=3)
    helper = make_helper(store)
    with fleetpool.open_budget(store, "orders-db") as budget:
        # A fleetpool.Database elsewhere holds a lease of the same budget.
        client = budget.acquire(function="api", holder="container-1", ttl=60)
        got = helper(
            {"action": "acquire", "database": "orders-db", "function": "api", "ttl": 30},
            Context("r1"),
        )
        assert got["granted"] is True and got["remaining"] == 1
        assert got["expires_at"] > time.time() + 25
        renewed = helper(
            {"action": "renew", "database": "orders-db", "lease": got["lease"], "ttl": 90}
        )
        assert renewed["renewed"] is True and renewed["expires_at"] > time.time() + 85
        assert helper(
            {"action": "release", "database": "orders-db", "lease": got["lease"]}, Context("r2")
        ) == {"released": True, "remaining": 2}
        assert helper({"action": "release", "database": "orders-db", "lease": got["lease"]}) == {
            "released": False,
            "remaining": 2,
        }
        assert helper({"action": "renew", "database": "orders-db", "lease": got["lease"]}) == {
            "renewed": False
        }
        # An anonymous release never gives back a lease the helper did not grant.
        assert helper({"action": "release", "database": "orders-db"})["released"] is False
        assert [x.id for x in budget.leases()] == [client.id]
        budget.release(client)
    capsys.readouterr()


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([], "must be a JSON object"),
        ({}, "needs 'database'"),
        ({"incrementCounter": True}, "needs 'RDBMSName'"),
        ({"incrementCounter": "yes", "RDBMSName": "MySQL"}, "must be true or false"),
        ({"action": "borrow", "database": "db"}, "unknown helper action 'borrow'"),
        ({"action": "acquire", "database": "db", "ttl": -1}, "'ttl' must be a number"),
        ({"action": "acquire", "database": "db", "wait": "1"}, "'wait' must be a number"),
        ({"action": "renew", "database": "db"}, "'lease' must be the id"),
    ],
)
def test_malformed_events_say_what_is_accepted(store: str, event: Any, message: str) -> None:
    with pytest.raises(fleetpool.ConfigError, match=message):
        make_helper(store)(event, Context("r"))


@pytest.fixture
def fresh_module_helper() -> Iterator[None]:
    helper_module._helper = None
    yield
    helper_module._helper = None


def test_lambda_entry_point_reads_its_settings_from_the_environment(
    store: str,
    monkeypatch: pytest.MonkeyPatch,
    fresh_module_helper: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(store, "MySQL", limit=1)
    monkeypatch.setenv("FLEETPOOL_BUDGET_URL", store)
    monkeypatch.setenv("FLEETPOOL_LEASE_TTL", "45")
    monkeypatch.setenv("FLEETPOOL_HELPER_NAMESPACE", "Shop/Connections")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "helper")
    assert helper_module.handler({"incrementCounter": True, "RDBMSName": "MySQL"}, Context("a"))
    (blob,) = sample_blobs(capsys.readouterr().out, "MySQL")
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Shop/Connections"
    with fleetpool.open_budget(store, "MySQL") as budget:
        (lease,) = budget.leases()
    assert 40 < lease.expires_at - lease.acquired_at <= 45


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLEETPOOL_BUDGET_URL": ""}, "needs FLEETPOOL_BUDGET_URL"),
        ({"FLEETPOOL_LEASE_TTL": "soon"}, "FLEETPOOL_LEASE_TTL must be a number"),
        ({"FLEETPOOL_HELPER_WAIT": "-1"}, "FLEETPOOL_HELPER_WAIT must be a number"),
    ],
)
def test_bad_settings_are_named(
    store: str,
    monkeypatch: pytest.MonkeyPatch,
    fresh_module_helper: None,
    env: dict[str, str],
    message: str,
) -> None:
    monkeypatch.setenv("FLEETPOOL_BUDGET_URL", store)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(fleetpool.ConfigError, match=message):
        helper_module.handler({"incrementCounter": True, "RDBMSName": "MySQL"}, Context("a"))
