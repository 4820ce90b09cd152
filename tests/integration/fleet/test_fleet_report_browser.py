"""The HTML report opens in headless Chromium with no errors and its charts render."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fleetpool.fleet.emulator import FunctionConfig
from fleetpool.fleet.report import write_report
from fleetpool.fleet.run import run_scenario
from fleetpool.fleet.scenario import Scenario
from fleetpool.fleet.traffic import Phase, Workload

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed")

# Injected before the report: any script error or failed resource load is written
# into the DOM, where --dump-dom shows it.
PROBE = """<script>
window.onerror = function (m) { document.documentElement.setAttribute('data-js-error', m); };
window.addEventListener('error', function (e) {
  if (e.target && e.target !== window) {
    document.documentElement.setAttribute('data-load-error', e.target.outerHTML.slice(0, 80));
  }
}, true);
</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    scenario = Scenario(
        name="browser",
        strategies=("naive", "global"),
        max_connections=5,
        lease_ttl=1.0,
        function=FunctionConfig(handler="", timeout=3.0, concurrency=20, idle_lifetime=1.0),
        workload=Workload(think=0.2),
        phases=(Phase("spike", 3.0, base_rate=2.0, peak_rate=60.0, peak_at=1.0, peak_length=0.3),),
    )
    run = run_scenario(scenario)
    html = tmp / "report.html"
    write_report(run, html, tmp / "report.json")
    return html


def test_report_opens_without_errors_and_charts_render(report: Path, tmp_path: Path) -> None:
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("<head>", "<head>" + PROBE, 1))
    out = chromium(tmp_path, "--dump-dom", probed.as_uri())
    dom = out.stdout
    assert "</html>" in dom, out.stderr[-2000:]
    html_tag = re.search(r"<html\b[^>]*>", dom)
    assert html_tag is not None
    assert "data-js-error" not in html_tag.group(0)
    assert "data-load-error" not in html_tag.group(0)
    assert "Uncaught" not in out.stderr
    svgs = re.findall(r"<svg\b", dom)
    paths = re.findall(r"<path\b[^>]*\sd=\"M[\d.]+,[\d.]+ L", dom)
    assert len(svgs) == 2 + 2 * 4
    assert len(paths) >= 10
    assert "naive" in dom and "global" in dom


def test_report_screenshot(report: Path, tmp_path: Path) -> None:
    png = tmp_path / "shot.png"
    out = chromium(
        tmp_path,
        "--hide-scrollbars",
        "--window-size=1460,1200",
        f"--screenshot={png}",
        report.as_uri(),
    )
    assert png.exists() and png.stat().st_size > 20_000, out.stderr[-2000:]


def test_report_table_scrolls_in_its_box_not_the_page(report: Path, tmp_path: Path) -> None:
    """At 1400 px and narrower, the page never scrolls sideways: a table wider than the
    page scrolls inside its own box."""
    from tests.browser import Browser

    with Browser(tmp_path / "cdp-profile") as browser:
        browser.open(report.as_uri())
        browser.wait_for("document.readyState === 'complete'")
        for width in (1400, 700):
            browser.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            )
            browser.pump(0.3)
            page = browser.evaluate(
                "[document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]"
            )
            assert page[0] <= page[1], (width, page)
            box = browser.evaluate(
                "(() => { const b = document.querySelector('div.scroll');"
                " return [getComputedStyle(b).overflowX, b.scrollWidth, b.clientWidth]; })()"
            )
            assert box[0] == "auto"
            if width == 700:
                assert box[1] > box[2]  # the table is wider than its box: the box scrolls
        assert browser.errors() == []
