"""What a function's global section loads: ``import fleetpool`` + ``Database(...)``.

The cold-start figure in the README (benchmarks/cold_start.py) depends on the
budget, the metrics, the reaper, TLS, the AWS SDK and the driver being imported
by the first connection, not by construction. This checks it in a fresh
interpreter, so a new eager import anywhere on that path shows up here.
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.cold_start import GLOBAL_SECTION

LOADED = GLOBAL_SECTION + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"

#: Loaded at the first connection (or never, for this Database), not in the global section.
DEFERRED = (
    "boto3",
    "botocore",
    "psycopg",
    "ssl",
    "socket",
    "hashlib",
    "dataclasses",
    "fleetpool.budget",
    "fleetpool.metrics",
    "fleetpool.client.reaper",
    "fleetpool.tls",
)


def test_the_global_section_defers_the_store_driver_sdk_and_tls() -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-c", LOADED],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"AWS_REGION": "us-east-1"},
    )
    loaded = set(json.loads(done.stdout))
    assert "fleetpool.client.database" in loaded
    assert sorted(loaded & set(DEFERRED)) == []


def test_the_deferred_parts_still_work_once_touched() -> None:
    code = GLOBAL_SECTION + (
        "import json\n"
        "b = fleetpool.Database('postgresql://a@h/d', budget='memory://').budget\n"
        "print(json.dumps([type(b).__name__, fleetpool.Budget.__name__, repr(db.stats)[:6]]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == ["Budget", "Budget", "Stats("]
