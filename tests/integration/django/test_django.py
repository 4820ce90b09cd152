"""The Django backends, run by Django's own test runner against real servers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fleetpool

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]

pytest.importorskip("django")


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_django_test_runner_on_fleetpool_backend(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path, unique_name: str
) -> None:
    dsn = str(request.getfixturevalue("pg_dsn" if engine == "postgresql" else "mysql_dsn"))
    budget_url = f"sqlite:///{tmp_path / 'budget.db'}"
    with fleetpool.open_budget(budget_url, unique_name) as budget:
        budget.configure(limit=5)
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT / "src"), env.get("PYTHONPATH", "")]),
        DJANGO_SETTINGS_MODULE="fpsite.settings",
        FP_DJANGO_DSN=dsn,
        FP_DJANGO_BUDGET=budget_url,
        FP_DJANGO_BUDGET_NAME=unique_name,
        FP_DJANGO_TEST_DB=f"test_{unique_name.replace('-', '_')}",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "django", "test", "fpsite", "-v", "2", "--noinput"],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Applying fpsite.0001_initial... OK" in output
    assert "Ran 7 tests" in output and "\nOK" in output, output
    with fleetpool.open_budget(budget_url, unique_name) as budget:
        assert budget.leases() == [], "every lease was released by the end of the run"
