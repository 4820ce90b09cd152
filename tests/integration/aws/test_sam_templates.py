"""The SAM templates in examples/aws-sam: lint, structure, and ``sam build``.

* cfn-lint with the serverless rules passes on every template;
* every IAM statement names its resources, none with a wildcard (except the one
  action AWS defines without resources, ``ecr:GetAuthorizationToken``);
* every function's handler exists (in its CodeUri, or in fleetpool for handlers
  the layer carries) and every layer it uses is built by ``fleetpool layer build``
  for the function's runtime and architecture;
* the dashboard and the alarms name metrics fleetpool writes;
* ``sam build`` succeeds without Docker where aws-sam-cli can be installed
  (``scripts/sam``, a venv of its own); the test says why when it cannot.

What cannot run here is a real deploy (no AWS account): the README says so.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetpool.aws import helper
from fleetpool.metrics import BudgetMetrics

ROOT = Path(__file__).resolve().parents[3]
SAM_DIR = ROOT / "examples" / "aws-sam"
TEMPLATES = sorted(SAM_DIR.glob("*.yaml"))
LAYER_ZIP = "build/fleetpool-layer.zip"
#: Actions AWS defines with no resource type: "*" is the only resource they accept.
NO_RESOURCE_TYPE = {"ecr:GetAuthorizationToken"}


def load(path: Path) -> dict[str, Any]:
    from cfnlint.decode import decode_str

    template, errors = decode_str(path.read_text())
    assert not errors, errors
    return dict(template)


def branches(node: Any) -> Iterator[Any]:
    """The values a node may take: both sides of Fn::If, nothing for AWS::NoValue."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        _, yes, no = node["Fn::If"]
        yield from branches(yes)
        yield from branches(no)
    elif isinstance(node, dict) and node.get("Ref") == "AWS::NoValue":
        return
    else:
        yield node


def statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, res in template["Resources"].items():
        props = res.get("Properties", {})
        docs: list[Any] = []
        if res["Type"] == "AWS::Serverless::Function":
            docs += [p for p in props.get("Policies", []) if isinstance(p, dict)]
        if res["Type"] == "AWS::IAM::Role":
            docs += [p["PolicyDocument"] for p in props.get("Policies", [])]
        if res["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            docs.append(props["PolicyDocument"])
        for doc in docs:
            for node in doc["Statement"]:
                for statement in branches(node):
                    yield name, statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_there_are_templates() -> None:
    assert {p.name for p in TEMPLATES} == {"template.yaml", "proxy.yaml"}


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_with_serverless_rules(path: Path) -> None:
    exe = Path(sys.executable).with_name("cfn-lint")
    cfn_lint = str(exe) if exe.exists() else shutil.which("cfn-lint")
    if cfn_lint is None:
        pytest.skip("cfn-lint is not installed (pip install 'fleetpool[test]')")
    done = subprocess.run(
        [cfn_lint, str(path), "--append-rules", "cfn_lint_serverless.rules"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_iam_statement_names_its_resources(path: Path) -> None:
    found = list(statements(load(path)))
    assert found
    for owner, st in found:
        where = f"{path.name}: {owner} {st.get('Sid', '')}"
        assert st["Effect"] == "Allow" and "NotResource" not in st and "NotAction" not in st
        assert "Resource" in st, f"{where} names no resource"
        actions = set(as_list(st["Action"]))
        assert not any("*" in a for a in actions), f"{where}: wildcard action"
        for resource in as_list(st["Resource"]):
            text = json.dumps(resource)
            if resource == "*":
                assert actions <= NO_RESOURCE_TYPE, f"{where}: Resource '*' for {actions}"
            else:
                # Fn::Sub placeholders are ${...}; a literal * would be a wildcard.
                assert "*" not in re.sub(r"\$\{[^}]*\}", "", text), f"{where}: {text}"


def _globals(template: dict[str, Any]) -> dict[str, Any]:
    return dict(template.get("Globals", {}).get("Function", {}))


def test_functions_handlers_and_layers_exist() -> None:
    template = load(SAM_DIR / "template.yaml")
    resources = template["Resources"]
    functions = {
        n: {**_globals(template), **r["Properties"]}
        for n, r in resources.items()
        if r["Type"] == "AWS::Serverless::Function"
    }
    assert set(functions) == {"OrdersFunction", "SampleHelperFunction"}
    for name, props in functions.items():
        module, _, attr = props["Handler"].rpartition(".")
        source = SAM_DIR / props["CodeUri"] / (module.replace(".", "/") + ".py")
        if source.exists():
            tree = ast.parse(source.read_text())
            names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
            assert attr in names, f"{name}: {source} defines no {attr}"
        else:  # carried by the layer: fleetpool's own module
            assert module.startswith("fleetpool."), f"{name}: handler {module} not found"
            assert callable(getattr(importlib.import_module(module), attr))
        for ref in props["Layers"]:
            layer = resources[ref["Ref"]]
            assert layer["Type"] == "AWS::Serverless::LayerVersion"
            lp = layer["Properties"]
            assert lp["ContentUri"] == LAYER_ZIP
            assert props["Runtime"] in lp["CompatibleRuntimes"]
            assert set(props["Architectures"]) <= set(lp["CompatibleArchitectures"])


def _written_metric_names() -> set[str]:
    m = BudgetMetrics("b", "memory")
    m.granted("f", 0.01, reclaimed=1, capacity=(2, 1))
    m.refused("f", 0.02)
    m.failed_open("f")
    (record,) = m.emf_records()
    return {d["Name"] for d in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]}


def test_dashboard_and_alarms_name_metrics_fleetpool_writes() -> None:
    template = load(SAM_DIR / "template.yaml")
    written = _written_metric_names()
    sample = {helper.REMAINING, helper.NO_CONNECTIONS_LEFT}
    resources = template["Resources"]
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    dashboard = json.loads(re.sub(r"\$\{[^}]*\}", "x", body))
    charted = set()
    for widget in dashboard["widgets"]:
        for row in widget["properties"]["metrics"]:
            namespace, metric = row[0], row[1]
            charted.add(metric)
            assert metric in (sample if namespace == helper.SAMPLE_NAMESPACE else written)
    assert {"RemainingConnections", "NoConnectionsLeftError", "LeaseWaitTime"} <= charted
    assert "ExpiredLeasesReclaimed" in charted
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert {a["MetricName"] for a in alarms} <= written
    assert {a["MetricName"] for a in alarms} >= {"NoConnectionsLeftError", "LeaseWaitTime"}


def test_sam_build_without_docker(tmp_path: Path, arm64_layer: Path) -> None:
    script = ROOT / "scripts" / "sam"
    setup = subprocess.run(
        ["bash", str(script), "--install-only"], capture_output=True, text=True, timeout=900
    )
    if setup.returncode != 0:
        pytest.skip(f"aws-sam-cli could not be installed here: {setup.stderr.strip()[-300:]}")
    app = tmp_path / "aws-sam"
    shutil.copytree(SAM_DIR, app, ignore=shutil.ignore_patterns("build", ".aws-sam"))
    (app / "build").mkdir()
    shutil.copy(arm64_layer, app / LAYER_ZIP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER")}
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"  # prove no container is used
    done = subprocess.run(
        ["bash", str(script), "build", "--template-file", "template.yaml"],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    built = app / ".aws-sam" / "build"
    assert (built / "OrdersFunction" / "app.py").is_file()
    assert "Build Succeeded" in done.stdout + done.stderr
    out = load(built / "template.yaml")
    content = out["Resources"]["FleetpoolLayer"]["Properties"]["ContentUri"]
    assert Path(app / ".aws-sam" / "build", content).resolve() == (app / LAYER_ZIP).resolve()
