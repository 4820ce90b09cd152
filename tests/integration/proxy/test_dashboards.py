"""The dashboards in examples/dashboards against a live proxy:

* Grafana: a real Prometheus scrapes the proxy's /metrics and runs every panel's query;
  each one parses, returns series, and has the labels its legend names.
* CloudWatch: the proxy writes EMF lines (emf_interval); each is valid EMF, and every
  metric and dimension the dashboard template shows is one the proxy writes.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import fleetpool
from fleetpool_testing import MissingBinary, PrometheusServer, require_binary
from tests.emf_check import check_emf

from .conftest import ProxyHandle

ROOT = Path(__file__).resolve().parents[3]
GRAFANA = ROOT / "examples/dashboards/grafana-proxy.json"
CLOUDWATCH = ROOT / "examples/dashboards/cloudwatch-proxy.yaml"


def _traffic(handle: ProxyHandle, stop: threading.Event) -> None:
    with psycopg.connect(handle.dsn(), autocommit=True) as conn:
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            conn.execute("SELECT 1")
            time.sleep(0.01)


def test_grafana_queries_run_on_prometheus(proxy_factory: Any, redis_url: str) -> None:
    try:
        require_binary("prometheus")
    except MissingBinary as exc:
        pytest.skip(str(exc))
    with fleetpool.open_budget(redis_url, "dash-budget") as budget:
        budget.configure(limit=6, functions={"api": (1, 3)})
        lease = budget.acquire(function="api", ttl=120)  # a direct client's lease
        handle: ProxyHandle = proxy_factory(
            admin_listen=("127.0.0.1", 0), budget_url=redis_url, budget_name="dash-budget"
        )
        stop = threading.Event()
        worker = threading.Thread(target=_traffic, args=(handle, stop))
        worker.start()
        pinned = psycopg.connect(handle.dsn(), autocommit=True)
        pinned.execute("LISTEN dashboards")
        prom = PrometheusServer([f"127.0.0.1:{handle.proxy.admin.port}"]).start()
        try:
            prom.wait_scraped(samples=4)
            dashboard = json.loads(GRAFANA.read_text())
            ids = [p["id"] for p in dashboard["panels"]]
            assert len(ids) == len(set(ids))
            for panel in dashboard["panels"]:
                for target in panel["targets"]:
                    expr = target["expr"].replace("$instance", ".*")
                    expr = expr.replace("$__rate_interval", "30s")
                    result = prom.query(expr)
                    assert result, f"{panel['title']}: no series for {expr}"
                    for label in re.findall(r"\{\{(\w+)\}\}", target["legendFormat"]):
                        assert all(label in r["metric"] for r in result), (expr, label)
        finally:
            stop.set()
            worker.join(30)
            pinned.close()
            prom.close()
            budget.release(lease)


def test_cloudwatch_dashboard_shows_what_the_proxy_writes(proxy_factory: Any) -> None:
    from cfnlint.decode import decode_str

    handle: ProxyHandle = proxy_factory(emf_interval=0.2, name="dash-proxy")
    stream = io.StringIO()
    handle.call(lambda: setattr(handle.proxy.emf, "stream", stream))

    def lines_written(n: int) -> None:
        deadline = time.monotonic() + 20
        while stream.getvalue().count("\n") < n and time.monotonic() < deadline:
            time.sleep(0.05)

    lines_written(1)  # before the traffic: later lines report what it added
    with psycopg.connect(handle.dsn(), autocommit=True) as conn:
        for _ in range(5):
            conn.execute("SELECT 1")
        lines_written(3)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(records) >= 3
    written: set[tuple[str, str]] = set()
    for record in records:
        check_emf(record)
        directive = record["_aws"]["CloudWatchMetrics"][0]
        assert directive["Dimensions"] == [["Proxy"]] and record["Proxy"] == "dash-proxy"
        written |= {(directive["Namespace"], m["Name"]) for m in directive["Metrics"]}
    # the first line has no counters (nothing to compare with); later ones do
    assert "Transactions" not in records[0] and sum(r.get("Transactions", 0) for r in records) >= 5

    template, errors = decode_str(CLOUDWATCH.read_text())
    assert not errors, errors
    defaults = {k: v["Default"] for k, v in template["Parameters"].items()}
    body_sub = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    body = json.loads(
        body_sub.replace("${AWS::Region}", "eu-west-1")
        .replace("${MetricsNamespace}", defaults["MetricsNamespace"])
        .replace("${ProxyName}", "dash-proxy")
    )
    shown = set()
    for widget in body["widgets"]:
        for metric in widget["properties"]["metrics"]:
            namespace, name, dim, value = metric[:4]
            assert (dim, value) == ("Proxy", "dash-proxy")
            shown.add((namespace, name))
    assert shown <= written, shown - written


def test_cloudwatch_template_passes_cfn_lint() -> None:
    exe = Path(sys.executable).with_name("cfn-lint")
    cfn_lint = str(exe) if exe.exists() else shutil.which("cfn-lint")
    if cfn_lint is None:
        pytest.skip("cfn-lint is not installed (pip install 'fleetpool[test]')")
    done = subprocess.run(
        [cfn_lint, str(CLOUDWATCH)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
