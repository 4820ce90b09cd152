"""The README's examples run as written.

Each example block the README marks with ``<!-- readme-test: NAME -->`` is taken from the
README itself and run: Python blocks with ``exec``, command blocks line by line through
the ``fleetpool`` entry point. Only what cannot exist here is substituted: the hosts
(``redis://cache:6379/0`` becomes a throwaway Redis, ``$DATABASE_URL`` a throwaway
PostgreSQL), and ``budget watch`` gets ``--count 1`` so it ends. A command's expected exit
status is the ``status N`` its comment announces (0 otherwise).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import fleetpool
from tests.cli_run import fleetpool as run_fleetpool

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
STORE = "redis://cache:6379/0"


def block(name: str) -> str:
    match = re.search(rf"<!-- readme-test: {name} -->\n```\w*\n(.*?)\n```", README, re.S)
    assert match, f"README has no block marked readme-test: {name}"
    return match.group(1)


def commands(name: str) -> list[tuple[list[str], int]]:
    out = []
    for line in block(name).splitlines():
        if not line.strip():
            continue
        status = re.search(r"#.*\bstatus (\d+)", line)
        argv = [os.path.expandvars(a) for a in shlex.split(line, comments=True)]
        assert argv[0] == "fleetpool", line
        out.append((argv[1:], int(status.group(1)) if status else 0))
    return out


def test_the_cli_examples() -> None:
    for argv, status in commands("cli"):
        result = run_fleetpool(*argv)
        assert result.code == status, (argv, result)
    assert not Path("/nonexistent").exists()


def test_the_virtual_clock_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for argv, status in commands("virtual"):
        argv = [str(ROOT / a) if a.startswith("src/") else a for a in argv]
        result = run_fleetpool(*argv)
        assert result.code == status, (argv, result)
    assert (tmp_path / "plan.html").read_text().startswith("<!DOCTYPE html>")


@pytest.fixture
def database(pg_server_factory: Any) -> str:
    server = pg_server_factory()
    server.execute("CREATE TABLE orders (id serial PRIMARY KEY, item text)")
    server.execute("CREATE TABLE audit (order_id int)")
    return str(server.dsn)


def test_the_budget_and_client_examples(
    redis_url: str, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = block("budget-python").replace(STORE, redis_url)
    exec(compile(code, "README.md:budget-python", "exec"), {})
    with fleetpool.open_budget(redis_url, "orders-db") as budget:
        assert budget.config().limit == 80

    monkeypatch.setenv("DATABASE_URL", database)
    for argv, status in commands("budget-cli"):
        argv = [a.replace(STORE, redis_url) for a in argv]
        if argv[:2] == ["budget", "watch"]:
            argv += ["--count", "1"]
        result = run_fleetpool(*argv)
        assert result.code == status, (argv, result)
    with fleetpool.open_budget(redis_url, "orders-db") as budget:
        config = budget.config()
        assert config.limit == 100 and set(config.functions) == {"api", "reports"}

    monkeypatch.setenv("BUDGET_URL", redis_url)
    monkeypatch.delenv("DB_SECRET_ARN", raising=False)
    namespace: dict[str, Any] = {}
    exec(compile(block("client-python"), "README.md:client-python", "exec"), namespace)
    try:
        assert namespace["handler"]({"item": "book"}, None) == {"id": 1}
        assert namespace["handler"]({"item": "pen"}, None) == {"id": 2}
    finally:
        namespace["db"].close()
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM audit").fetchone() == (2,)


def test_without_the_budget_name_the_example_fails_at_once_naming_the_budget(
    redis_url: str, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trap the README used to set: a budget configured as "orders-db" while
    Database derived another name. Now the first call says so instead of waiting."""
    with fleetpool.open_budget(redis_url, "orders-db") as budget:
        budget.configure(limit=5)
    monkeypatch.setenv("DATABASE_URL", database)
    monkeypatch.setenv("BUDGET_URL", redis_url)
    code = block("client-python")
    code = "\n".join(line for line in code.splitlines() if "budget_name=" not in line)
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md:client-python", "exec"), namespace)
    derived = run_fleetpool("budget", "name", database).out.strip()
    started = time.monotonic()
    try:
        with pytest.raises(fleetpool.BudgetNotConfigured) as err:
            namespace["handler"]({"item": "book"}, None)
    finally:
        namespace["db"].close()
    assert time.monotonic() - started < namespace["db"].max_wait  # did not wait it out
    assert repr(derived) in str(err.value) and "fleetpool budget set" in str(err.value)


def test_the_pgbouncer_migration_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(ROOT / "examples/pgbouncer", tmp_path / "examples/pgbouncer")
    monkeypatch.chdir(tmp_path)
    for argv, status in commands("pgbouncer"):
        result = run_fleetpool(*argv)
        assert result.code == status, (argv, result)
    assert (tmp_path / "proxy.toml").exists()


def test_the_lint_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the README's paths are the repository's
    for argv, status in commands("lint"):
        result = run_fleetpool(*argv)
        assert result.code == status, (argv, result)
