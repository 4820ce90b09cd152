"""``fleetpool budget``: readers never create a store, an unconfigured budget is "not
found" (exit 3) with its name, ``set`` keeps what it is not given, ``list`` and ``name``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

import fleetpool
from fleetpool.cli import EXIT_NOT_FOUND, EXIT_USAGE
from tests.cli_run import fleetpool as run_fleetpool
from tests.cli_run import one_line_error


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/budgets/b.db"
    return str(request.getfixturevalue("redis_url"))


def test_readers_create_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/missing/dir/b.db"
    for args in (["status", "orders"], ["watch", "orders", "--count", "1"], ["list"]):
        result = run_fleetpool("budget", *args, "--store", url)
        assert result.code == EXIT_NOT_FOUND, result
        assert "no budget store" in one_line_error(result)
    assert not (tmp_path / "missing").exists()


def test_status_of_an_unconfigured_budget_names_it(store: str) -> None:
    name = f"orders-{uuid.uuid4().hex[:6]}"
    run_fleetpool("budget", "set", "other", "--store", store, "--limit", "3")  # the store exists
    result = run_fleetpool("budget", "status", name, "--store", store)
    assert result.code == EXIT_NOT_FOUND
    line = one_line_error(result)
    assert repr(name) in line and "fleetpool budget set" in line


def test_set_keeps_function_limits_it_is_not_given(store: str) -> None:
    name = f"orders-{uuid.uuid4().hex[:6]}"
    assert (
        run_fleetpool("budget", "set", name, "--store", store, "-f", "api=1:5").code == EXIT_USAGE
    )
    first = run_fleetpool("budget", "set", name, "--store", store, "--limit", "10", "-f", "api=1:5")
    assert first.code == 0, first
    second = run_fleetpool(
        "budget", "set", name, "--store", store, "--limit", "12", "-f", "jobs=0:2"
    )
    assert second.code == 0
    status = run_fleetpool("budget", "status", name, "--store", store, "--json")
    data = json.loads(status.out)
    assert data["limit"] == 12
    assert data["function_limits"] == {"api": {"min": 1, "max": 5}, "jobs": {"min": 0, "max": 2}}
    replaced = run_fleetpool("budget", "set", name, "--store", store, "-f", "jobs=0:3", "--replace")
    assert replaced.code == 0
    data = json.loads(run_fleetpool("budget", "status", name, "--store", store, "--json").out)
    assert data["limit"] == 12 and data["function_limits"] == {"jobs": {"min": 0, "max": 3}}


def test_list_shows_the_budgets_of_a_store(store: str) -> None:
    names = sorted(f"b-{uuid.uuid4().hex[:6]}" for _ in range(2))
    for n, name in enumerate(names):
        run_fleetpool("budget", "set", name, "--store", store, "--limit", str(n + 1))
    with fleetpool.open_budget(store, names[0]) as budget:
        lease = budget.acquire(function="api", ttl=30)
        listed = json.loads(run_fleetpool("budget", "list", "--store", store, "--json").out)
        budget.release(lease)
    rows = {row["budget"]: row for row in listed}
    assert rows[names[0]]["in_use"] == 1 and rows[names[1]]["limit"] == 2
    table = run_fleetpool("budget", "list", "--store", store)
    assert table.code == 0 and names[0] in table.out and names[1] in table.out


def test_name_prints_the_default_budget_name_of_a_database_url() -> None:
    result = run_fleetpool("budget", "name", "postgresql://app:secret@db.internal/orders")
    assert result.code == 0
    assert result.out.strip() == "postgresql://db.internal:5432/orders"
    assert "secret" not in result.out
    db = fleetpool.Database("postgresql://app:secret@db.internal/orders", budget="memory://")
    assert db.budget_name == result.out.strip()
