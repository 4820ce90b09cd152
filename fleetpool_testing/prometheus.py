"""A throwaway Prometheus server that scrapes given targets every second.

Strategy: the real server, so a dashboard's queries are run by the engine that will
run them in production (PromQL parsing, rate(), histogram_quantile() over real scrapes)
rather than checked by eye. It keeps its data in its own folder and answers the HTTP
query API on a free loopback port.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from .binaries import require_binary
from .processes import ServerError
from .server import Server

QUERY_TIMEOUT = 10.0


class PrometheusServer(Server):
    """Prometheus scraping ``targets`` (``host:port``, path /metrics) every second."""

    kind = "prometheus"
    stop_signal = signal.SIGTERM

    def __init__(self, targets: Sequence[str]) -> None:
        self.binary = require_binary("prometheus")
        super().__init__()
        self.targets = list(targets)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _argv(self) -> list[str]:
        config = self.tmpdir / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {"job_name": "fleetpool", "static_configs": [{"targets": self.targets}]}
                    ],
                }
            )
        )
        return [
            self.binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.tmpdir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--log.level=warn",
        ]

    def _probe(self) -> None:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
            if resp.status != 200:
                raise ServerError(f"prometheus not ready: {resp.status}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (raises on a query error)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=QUERY_TIMEOUT) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise ServerError(f"query {expr!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_scraped(self, samples: int = 2, timeout: float = 30.0) -> None:
        """Wait until every target was scraped ``samples`` times, and is up."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.query('count_over_time(up{job="fleetpool"}[1m])')
            up = self.query('up{job="fleetpool"}')
            if (
                len(got) == len(self.targets)
                and all(float(r["value"][1]) >= samples for r in got)
                and all(r["value"][1] == "1" for r in up)
            ):
                return
            if time.monotonic() > deadline:
                raise ServerError(f"prometheus did not scrape {self.targets} in time: {up}")
            time.sleep(0.5)
