"""/dashboard in headless Chromium: it renders from /status, refreshes live (a change in
the proxy shows up without a reload), loads nothing but its own origin, and raises no
script error."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.browser import CHROMIUM, Browser

from .conftest import ProxyHandle

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed")


def test_dashboard_renders_updates_and_has_no_errors(proxy_factory: Any, tmp_path: Path) -> None:
    handle: ProxyHandle = proxy_factory(admin_listen=("127.0.0.1", 0), pool_size=3)
    base = f"http://127.0.0.1:{handle.proxy.admin.port}"
    with Browser(tmp_path / "profile") as browser:
        browser.open(f"{base}/dashboard?interval=300")
        browser.wait_for("Number(document.body.dataset.refreshes) >= 2")
        assert browser.evaluate("document.body.dataset.clients") == "0"
        shown_before = browser.evaluate("document.getElementById('clients').textContent")
        assert shown_before == "0"
        clients = [psycopg.connect(handle.dsn(), autocommit=True) for _ in range(3)]
        try:
            pinned = clients[0]
            pinned.execute("LISTEN dashboard_test")  # pins: shows in the pins table
            for conn in clients:
                conn.execute("SELECT 1")
            # No reload: the next polls show the three clients and the pin.
            browser.wait_for("document.body.dataset.clients === '3'")
            browser.wait_for("document.getElementById('pins').textContent.includes('LISTEN')")
            # the two unpinned clients' transactions (a pinned one never gives its back)
            browser.wait_for("Number(document.body.dataset.transactions) >= 2")
            pools = browser.evaluate("document.getElementById('pools').textContent")
            assert handle.proxy.cfg.upstream.database in pools
            paths = browser.evaluate(
                "Array.from(document.querySelectorAll('#chart-clients path')).length"
            )
            assert paths >= 1  # the chart drew its areas
        finally:
            for conn in clients:
                conn.close()
        assert browser.errors() == []
        hosts = {urlsplit(u).netloc for u in browser.requests() if u.startswith("http")}
        assert hosts == {urlsplit(base).netloc}  # no external asset
