"""``fleetpool layer build``: the zip imports and works in a clean interpreter.

The layer for this machine's runtime is built once, unzipped, and a fresh Python
with only the layer's ``python/`` directory on ``sys.path`` (``-I -S``: no
site-packages, no environment) runs the SAM example's handler against the real
PostgreSQL and MariaDB, with the DynamoDB budget and the password in Secrets
Manager, both on moto's server. The arm64 / python3.12 layer of the README is
built too (through the command line), to check it resolves and packs.
pip's cache makes a rebuild take seconds.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest

import fleetpool
from fleetpool.aws.layer import RUNTIMES, build_layer
from tests.emf_check import emf_lines

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
APP = ROOT / "examples" / "aws-sam" / "src"
HOST_RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
HOST_ARCH = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())

RUN = r"""
import importlib, json, os, sys, time
layer = sys.argv[1]
sys.path[:0] = [layer, os.environ["APP_DIR"]]
t0 = time.perf_counter()
app = importlib.import_module("app")
loaded = time.perf_counter() - t0
assert "boto3" not in sys.modules, "boto3 was imported before a secret was needed"
answers = [app.handler({}, type("Ctx", (), {"aws_request_id": f"req-{i}"})()) for i in range(2)]
outside = sorted(
    name for name, mod in list(sys.modules.items())
    if getattr(mod, "__file__", None)
    and "site-packages" in mod.__file__
    and not mod.__file__.startswith(layer)
)
print(json.dumps({"answers": answers, "outside": outside, "load_s": loaded,
                  "fleetpool": sys.modules["fleetpool"].__file__}))
"""


@pytest.fixture(scope="module")
def host_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if HOST_RUNTIME not in RUNTIMES or HOST_ARCH is None:
        pytest.skip(
            f"this machine's Python ({HOST_RUNTIME}, {platform.machine()}) is no Lambda runtime"
        )
    out = tmp_path_factory.mktemp("layer") / "layer.zip"
    report = build_layer(out, runtime=HOST_RUNTIME, arch=HOST_ARCH, extras="postgres,mysql,aws")
    assert report.compiled  # the host's own interpreter compiles it
    unzipped = out.parent / "unzipped"
    with zipfile.ZipFile(out) as zf:
        zf.extractall(unzipped)
    return unzipped / "python"


def test_layer_layout(host_layer: Path) -> None:
    assert (host_layer / "fleetpool" / "__init__.py").is_file()
    assert (host_layer / "fleetpool" / "aws" / "helper.py").is_file()
    assert not (host_layer / "fleetpool" / "proxy").exists()  # runs on Fargate, not Lambda
    assert not (host_layer / "fleetpool" / "fleet").exists()  # the demo stays home
    assert not (host_layer / "fleetpool" / "lint").exists()  # a tool for CI, not a function
    assert (host_layer / "psycopg").is_dir() and (host_layer / "pymysql").is_dir()
    assert (host_layer / "boto3").is_dir()
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    assert list((host_layer / "fleetpool").glob(f"__pycache__/__init__.{tag}.pyc"))


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_handler_runs_from_the_layer_alone(
    host_layer: Path,
    engine: str,
    request: pytest.FixtureRequest,
    moto_endpoint: str,
    unique_name: str,
) -> None:
    if engine == "postgresql":
        server = request.getfixturevalue("pg_server_factory")(
            max_connections=10, auth="scram-sha-256", password="layer-pw"
        )
        dsn, user, password = server.dsn.replace(":layer-pw@", "@"), "postgres", "layer-pw"
    else:
        dsn = request.getfixturevalue("mysql_dsn")
        user, password = "root", ""
    sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto_endpoint)
    secret = sm.create_secret(
        Name=unique_name, SecretString=json.dumps({"username": user, "password": password})
    )["ARN"]
    store = f"dynamodb://{unique_name}?region=us-east-1&endpoint_url={moto_endpoint}"
    with fleetpool.open_budget(store, "orders-db") as budget:
        budget.configure(limit=3)
    env: dict[str, Any] = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "APP_DIR": str(APP),
        "DATABASE_URL": dsn,
        "BUDGET_URL": store,
        "BUDGET_NAME": "orders-db",
        "DB_SECRET_ARN": secret,
        "AWS_REGION": "us-east-1",  # Lambda sets both
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": "orders-api",
    }
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", RUN, str(host_layer)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["answers"] == [{"engine": engine, "answer": 2}] * 2
    assert result["fleetpool"].startswith(str(host_layer))
    assert result["outside"] == []  # nothing came from this machine's site-packages
    # No Powertools in this layer: fleetpool's own EMF writer, once per invocation
    # that did something (the second, warm one took no lease).
    blobs = [b for b in emf_lines("\n".join(lines[:-1])) if b.get("Budget") == "orders-db"]
    assert len(blobs) == 1 and blobs[0]["LeaseGrants"] == 1
    assert blobs[0]["function_request_id"] == "req-0"
    with fleetpool.open_budget(store, "orders-db") as budget:
        # At exit the Database closed its connection and gave its lease back.
        assert budget.leases() == []


def test_arm64_layer_builds_from_the_command_line(arm64_layer: Path) -> None:
    with zipfile.ZipFile(arm64_layer) as zf:
        names = zf.namelist()
        assert "python/fleetpool/__init__.py" in names
        native = [n for n in names if n.startswith("python/psycopg_binary/") and ".so" in n]
        assert native and all("x86_64" not in n for n in native)
        assert any("aarch64" in n for n in native)
        assert not any(n.startswith("python/fleetpool/proxy/") for n in names)
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runtime", "python3.9"], "runtime must be one of python3.11, python3.12, python3.13"),
        (["--arch", "armv7"], "arch must be one of x86_64, arm64"),
        (["--extras", "postgres,kafka"], "unknown layer extra(s) 'kafka'"),
        (["--extras", "aws"], "needs a driver"),
        (["--out", "layer.tar"], "must name a .zip"),
    ],
)
def test_bad_options_are_named(args: list[str], message: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fleetpool.cli", "layer", "build", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
