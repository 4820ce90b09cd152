"""The proxy as a service: the systemd unit in examples/systemd passes
``systemd-analyze verify`` and runs the proxy as written (credentials as files, settings
from the environment, --check first, JSON logs with event fields, /ready, SIGHUP reload,
SIGTERM drain); /healthz and /ready answer what they should."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fleetpool_testing import free_port

from .conftest import ProxyHandle

ROOT = Path(__file__).resolve().parents[3]
UNIT = ROOT / "examples/systemd/fleetpool-proxy.service"
CONFIG = ROOT / "examples/systemd/proxy.toml"
FLEETPOOL = str(Path(sys.executable).with_name("fleetpool"))


def unit_lines(key: str) -> list[str]:
    return [
        line.split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if line.startswith(f"{key}=")
    ]


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (sudo apt-get install -y systemd)")
    # The unit names /usr/local/bin/fleetpool (pip's default); verify checks that the
    # binary exists, so point it at this checkout's.
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/fleetpool", FLEETPOOL))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def _http(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_unit_runs_the_proxy_as_written(pg_server_factory: Any, tmp_path: Path) -> None:
    server = pg_server_factory(auth="scram-sha-256", password="superuser-pw")
    server.execute("CREATE ROLE app LOGIN PASSWORD 'upstream-pw'")
    server.execute("CREATE DATABASE app OWNER app")
    # /etc/fleetpool and the credentials directory (%d), as the unit expects them.
    etc, creds = tmp_path / "etc", tmp_path / "credentials"
    etc.mkdir()
    creds.mkdir()
    port, admin_port = free_port(), free_port()
    config = CONFIG.read_text()
    config = config.replace("db.internal:5432", f"127.0.0.1:{server.port}")
    config = config.replace('"0.0.0.0:6432"', f'"127.0.0.1:{port}"')
    config = config.replace('"127.0.0.1:6480"', f'"127.0.0.1:{admin_port}"')
    (etc / "proxy.toml").write_text(config)
    (creds / "upstream-password").write_text("upstream-pw\n")
    (creds / "userlist.txt").write_text('"app" "client-pw"\n')
    env = {"PATH": os.environ["PATH"]}
    for line in unit_lines("Environment"):
        key, value = line.split("=", 1)
        env[key] = value.replace("%d", str(creds))

    def command(line: str) -> list[str]:
        argv = shlex.split(line.replace("/etc/fleetpool", str(etc)))
        return [FLEETPOOL if a == "/usr/local/bin/fleetpool" else a for a in argv]

    (check_line,) = unit_lines("ExecStartPre")
    check = subprocess.run(
        command(check_line), env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert check.returncode == 0 and ": OK: " in check.stdout, check.stderr
    assert "upstream-pw" not in check.stdout + check.stderr  # the secret is never shown

    (start_line,) = unit_lines("ExecStart")
    log = tmp_path / "proxy.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(command(start_line), env=env, stdout=out, stderr=out)
    try:
        ready = f"http://127.0.0.1:{admin_port}/ready"
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = _http(ready)
                if status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert body == {"ready": True, "reasons": []}
        assert _http(f"http://127.0.0.1:{admin_port}/healthz")[0] == 200
        dsn = f"postgresql://app:client-pw@127.0.0.1:{port}/app"
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("app",)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(f"postgresql://app:wrong@127.0.0.1:{port}/app", connect_timeout=5)
        with psycopg.connect(f"postgresql://app:client-pw@127.0.0.1:{port}/fleetpool") as admin:
            admin.autocommit = True
            admin.execute("RELOAD")
        # ExecReload: SIGHUP re-reads the file and the credentials; still ready.
        os.kill(proc.pid, signal.SIGHUP)
        time.sleep(0.5)
        assert _http(ready)[0] == 200
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        # KillSignal=SIGTERM: a drain, then exit 0 within TimeoutStopSec.
        proc.send_signal(signal.SIGTERM)
        (stop_timeout,) = unit_lines("TimeoutStopSec")
        assert proc.wait(float(stop_timeout)) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    events = {}
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            record = json.loads(line)  # FLEETPOOL_PROXY_LOG_FORMAT=json: every line
            if "event" in record:
                events.setdefault(record["event"], []).append(record)
    login = events["login"][0]
    assert (login["user"], login["database"]) == ("app", "app")
    assert re.fullmatch(r"127\.0\.0\.1:\d+", login["addr"])
    failed = events["login_failed"][0]
    assert failed["user"] == "app" and failed["code"] == "28P01"
    (reload,) = events["admin_command"]
    assert (reload["command"], reload["result"], reload["user"]) == ("RELOAD", "ok", "app")
    assert "upstream-pw" not in log.read_text() and "client-pw" not in log.read_text()


def test_ready_says_why_not(proxy_factory: Any, upstream: Any) -> None:
    from fleetpool.proxy.config import Upstream

    handle: ProxyHandle = proxy_factory(admin_listen=("127.0.0.1", 0), admin_users=["app"])
    base = f"http://127.0.0.1:{handle.proxy.admin.port}"
    assert _http(f"{base}/ready") == (200, {"ready": True, "reasons": []})
    with psycopg.connect(handle.dsn().rsplit("/", 1)[0] + "/fleetpool", autocommit=True) as c:
        c.execute("PAUSE")
        status, body = _http(f"{base}/ready")
        assert status == 503 and any("paused" in r for r in body["reasons"])
        assert _http(f"{base}/healthz")[0] == 200  # alive all the same
        c.execute("RESUME")
    assert _http(f"{base}/ready")[0] == 200
    # An upstream nobody listens on: once a client's connect fails, not ready.
    dead = Upstream([("127.0.0.1", free_port())], upstream.user, "", upstream.database)
    down: ProxyHandle = proxy_factory(
        admin_listen=("127.0.0.1", 0), upstream=dead, connection_borrow_timeout=1.0
    )
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(down.dsn(), connect_timeout=10)
    status, body = _http(f"http://127.0.0.1:{down.proxy.admin.port}/ready")
    assert status == 503 and any("cannot reach its server" in r for r in body["reasons"])
