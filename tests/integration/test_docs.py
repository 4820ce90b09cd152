"""The documentation site builds with warnings as errors, and has what the parts promise:
a page per part and how-to, the README's text, the API reference from the docstrings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fleetpool.client.database import Database

ROOT = Path(__file__).resolve().parents[2]

PAGES = [
    "index.html",
    "budget/index.html",
    "client/index.html",
    "proxy-postgresql/index.html",
    "proxy-mysql/index.html",
    "fleet/index.html",
    "data-api/index.html",
    "aws/index.html",
    "lint/index.html",
    "figures/index.html",
    "howto/lambda-postgres/index.html",
    "howto/lambda-mysql/index.html",
    "howto/from-aws-sample/index.html",
    "howto/from-serverless-mysql/index.html",
    "howto/from-pgbouncer/index.html",
    "howto/from-rds-proxy/index.html",
    "reference/database/index.html",
    "reference/lint/index.html",
]


def test_the_site_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,  # the snippets' paths (README.md, examples/) are the repository's
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for page in PAGES:
        assert (site / page).is_file(), page
    # README text reached its page, markers removed; the figure came along.
    budget = (site / "budget/index.html").read_text()
    assert "fleetpool budget set" in budget and "--8&lt;--" not in budget
    assert (site / "demo-chart.png").is_file()
    # The reference is generated from the docstrings.
    assert Database.__doc__ is not None
    first_line = Database.__doc__.strip().splitlines()[0].split(":")[0]
    assert first_line in (site / "reference/database/index.html").read_text()
