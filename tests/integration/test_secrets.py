"""Secrets never leak: each part runs with known secret strings -- database and proxy
passwords, token secrets, the admin token, Data API keys, a Redis password, the
passwords an attacker guesses, the tokens minted -- and everything it writes (stdout,
stderr, logs at DEBUG, console answers, HTTP bodies, exceptions, the demo's report,
JSON and container logs) is searched for them."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fleetpool_testing import PostgresServer, RedisServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"

UPSTREAM_PW = "Upstream-Pw-7f3a9e"
APP_PW = "App-Pw-c41d0b"
SERVER_USER_PW = "Server-User-Pw-88ab1"
TOKEN_SECRET = "Token-Secret-5e2b77"
TOKEN_PREVIOUS = "Token-Previous-1a9c3"
ADMIN_TOKEN = "Admin-Token-3c7d55"
DATA_API_SECRET = "DataApi-Secret-9b1f02"
REDIS_PW = "Redis-Pw-6d2e4a"
WRONG_GUESS = "Wrong-Guess-0a0a17"
SECRETS = (
    UPSTREAM_PW,
    APP_PW,
    SERVER_USER_PW,
    TOKEN_SECRET,
    TOKEN_PREVIOUS,
    ADMIN_TOKEN,
    DATA_API_SECRET,
    REDIS_PW,
    WRONG_GUESS,
)
KEY_ID = "AKIDLEAKTEST"
CLI = (sys.executable, "-m", "fleetpool.cli")


def assert_clean(where: str, texts: Iterable[str], extra: Iterable[str] = ()) -> None:
    """No secret (nor its URL-quoted form) in any of ``texts``."""
    from urllib.parse import quote

    needles = [*SECRETS, *extra]
    needles += [quote(s, safe="") for s in needles]
    found = []
    for i, text in enumerate(texts):
        for needle in needles:
            if needle and needle in text:
                at = text.index(needle)
                found.append(f"{where}[{i}]: ...{text[max(0, at - 80) : at + 40]!r}")
    assert not found, "secrets leaked:\n" + "\n".join(found)


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    for key in list(env):
        if key.startswith(("FLEETPOOL_", "PG", "AWS_")):
            del env[key]
    return env


@pytest.fixture
def secret_pg(pg_server_factory: Any) -> PostgresServer:
    server: PostgresServer = pg_server_factory(auth="scram-sha-256", password=UPSTREAM_PW)
    return server


@pytest.fixture
def secret_redis(redis_server_factory: Any) -> RedisServer:
    server: RedisServer = redis_server_factory()
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(f"CONFIG SET requirepass {REDIS_PW}\r\n".encode())
        assert s.recv(64).startswith(b"+OK")
    return server


def _wait_port(port: int, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process exited early:\n{out}\n{err}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"port {port} did not open")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _http(url: str, token: str | None = None) -> str:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


def _exception_texts(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def test_the_proxy_writes_no_secret(
    secret_pg: PostgresServer, secret_redis: RedisServer, tmp_path: Path
) -> None:
    import boto3
    from botocore.config import Config

    from fleetpool.tokens import make_token

    port, admin_port, api_port = free_port(), free_port(), free_port()
    pg = secret_pg
    budget_url = f"redis://:{REDIS_PW}@127.0.0.1:{secret_redis.port}/0"
    subprocess.run(
        [*CLI, "budget", "set", "default", "--store", budget_url, "--limit", "10"],
        env=_env(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    config = tmp_path / "proxy.toml"
    config.write_text(
        f'upstream = "postgresql://postgres:{UPSTREAM_PW}@127.0.0.1:{pg.port}/postgres"\n'
        f'listen = "127.0.0.1:{port}"\n'
        f'admin_listen = "127.0.0.1:{admin_port}"\n'
        f'admin_token = "{ADMIN_TOKEN}"\n'
        f'data_api_listen = "127.0.0.1:{api_port}"\n'
        f'token_secret = "{TOKEN_SECRET}"\n'
        f'token_secret_previous = "{TOKEN_PREVIOUS}"\n'
        f'budget_url = "{budget_url}"\n'
        'server_login = "upstream"\nadmin_users = ["app"]\npool_size = 3\n'
        'log_level = "DEBUG"\nlog_format = "json"\nlogin_delay = 0.01\n'
        "[users]\n"
        f'app = "{APP_PW}"\n'
        f'other = "{SERVER_USER_PW}"\n'
        "[server_users]\n"
        f'other = "{SERVER_USER_PW}"\n'
        "[databases]\n"
        f'postgres = "postgresql://postgres:{UPSTREAM_PW}@127.0.0.1:{pg.port}/postgres"\n'
        "[data_api]\n"
        f'access_keys = {{ {KEY_ID} = "{DATA_API_SECRET}" }}\n'
    )
    # Files, not pipes: a DEBUG log would fill a pipe nobody reads yet.
    out_path, err_path = tmp_path / "proxy.out", tmp_path / "proxy.err"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetpool.proxy", "--config", str(config)],
            env=_env(),
            stdout=out_file,
            stderr=err_file,
            text=True,
        )
    seen: list[str] = []
    tokens: list[str] = []
    try:
        _wait_port(port, proc)
        _wait_port(api_port, proc)
        base = f"postgresql://app:{APP_PW}@127.0.0.1:{port}"
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute("select 1")
        for guess in (WRONG_GUESS, f"{WRONG_GUESS}-2"):
            with pytest.raises(psycopg.OperationalError) as err:
                psycopg.connect(f"postgresql://app:{guess}@127.0.0.1:{port}/postgres")
            seen += _exception_texts(err.value)
        for secret in (TOKEN_SECRET, TOKEN_PREVIOUS):
            # (a user without a password in [users]: tokens travel as cleartext passwords)
            token = make_token(secret, "robot", time.time())
            tokens.append(token)
            with psycopg.connect(f"postgresql://robot:{token}@127.0.0.1:{port}/postgres") as conn:
                conn.execute("select 1")
        with psycopg.connect(f"{base}/fleetpool", autocommit=True) as console:
            for command in ("CONFIG", "STATS", "POOLS", "CLIENTS", "SERVERS", "WORKERS"):
                seen.append(repr(console.execute(f"SHOW {command}").fetchall()))
            console.execute("RELOAD")
        for path in ("/status", "/metrics"):
            seen.append(_http(f"http://127.0.0.1:{admin_port}{path}", ADMIN_TOKEN))
            seen.append(_http(f"http://127.0.0.1:{admin_port}{path}"))
        api_url = f"http://127.0.0.1:{api_port}"
        arns = {
            "resourceArn": "arn:aws:rds:us-east-1:123456789012:cluster:leak",
            "secretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:leak",
        }
        for secret in (DATA_API_SECRET, WRONG_GUESS):
            rds = boto3.client(
                "rds-data",
                endpoint_url=api_url,
                region_name="us-east-1",
                aws_access_key_id=KEY_ID,
                aws_secret_access_key=secret,
                config=Config(retries={"max_attempts": 1, "mode": "standard"}),
            )
            try:
                seen.append(repr(rds.execute_statement(**arns, sql="SELECT 1")))
            except Exception as exc:
                seen += _exception_texts(exc)
    finally:
        _stop(proc)
    out, err = out_path.read_text(), err_path.read_text()
    assert "reloaded" in out + err  # the log was captured
    assert_clean("proxy", [out, err, *seen], tokens)


def test_the_client_library_writes_no_secret(
    secret_pg: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    from fleetpool import Database

    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    good = f"postgresql://postgres:{UPSTREAM_PW}@127.0.0.1:{secret_pg.port}/postgres"
    db = Database(good, budget=None, connect_timeout=5, handle_signals=False)
    with db.connection() as conn:
        conn.execute("select 1")
    seen += [repr(db), str(db)]
    db.close()
    bad_urls = [
        f"postgresql://postgres:{WRONG_GUESS}@127.0.0.1:{secret_pg.port}/postgres",
        f"postgresql://postgres:{WRONG_GUESS}@127.0.0.1:{free_port()}/postgres",
        f"postgresql://postgres:{WRONG_GUESS}@127.0.0.1:{secret_pg.port}/postgres?options=-c%20x",
    ]
    for url in bad_urls:
        bad = Database(url, budget=None, connect_timeout=2, handle_signals=False)
        seen += [repr(bad), str(bad)]
        # Any error: its text is what is checked.
        with pytest.raises(Exception) as err, bad.connection() as conn:
            conn.execute("select 1")
        seen += _exception_texts(err.value)
        bad.close()
    for malformed in (
        f"postgresql://postgres:{WRONG_GUESS}@127.0.0.1:99999/postgres",
        f"postgres-ish://postgres:{WRONG_GUESS}@127.0.0.1/postgres",
        f"postgresql://postgres:{WRONG_GUESS}@127.0.0.1/a/b",
    ):
        with pytest.raises(Exception) as err:
            Database(malformed, budget=None)
        seen += _exception_texts(err.value)
    seen += [r.getMessage() for r in caplog.records]
    seen += ["".join(traceback.format_exception(*r.exc_info)) for r in caplog.records if r.exc_info]
    assert_clean("client", seen)


def test_the_budget_cli_writes_no_secret(secret_redis: RedisServer) -> None:
    url = f"redis://:{REDIS_PW}@127.0.0.1:{secret_redis.port}/0"
    wrong = f"redis://:{WRONG_GUESS}@127.0.0.1:{secret_redis.port}/0"
    cli = list(CLI)
    runs = [
        ["budget", "set", "leak-test", "--store", url, "--limit", "5"],
        ["budget", "status", "leak-test", "--store", url],
        ["budget", "status", "leak-test", "--store", wrong],
        ["budget", "status", "leak-test", "--store", url.replace("redis://", "redis-ish://")],
        ["budget", "status", "leak-test", "--store", url + "?timeout=oops"],
    ]
    seen: list[str] = []
    for args in runs:
        done = subprocess.run(
            cli + args, env=_env(), capture_output=True, text=True, timeout=60, check=False
        )
        seen += [done.stdout, done.stderr]
    assert "5" in seen[0] + seen[2]  # the limit was set and shown
    assert_clean("budget cli", seen)


def test_the_data_api_writes_no_secret(secret_pg: PostgresServer, tmp_path: Path) -> None:
    import boto3
    from botocore.config import Config

    port = free_port()
    upstream = f"postgresql://postgres:{UPSTREAM_PW}@127.0.0.1:{secret_pg.port}/postgres"
    out_path, err_path = tmp_path / "api.out", tmp_path / "api.err"
    out_file, err_file = out_path.open("w"), err_path.open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetpool.cli",
            "data-api",
            "--upstream",
            upstream,
            "--listen",
            f"127.0.0.1:{port}",
            "--log-level",
            "debug",
        ],
        env=dict(
            _env(),
            FLEETPOOL_DATA_API_ACCESS_KEYS=f"{KEY_ID}:{DATA_API_SECRET}",
            FLEETPOOL_DATA_API_TOKEN_SECRET=TOKEN_SECRET,
        ),
        stdout=out_file,
        stderr=err_file,
        text=True,
    )
    seen: list[str] = []
    try:
        _wait_port(port, proc)
        arns = {
            "resourceArn": "arn:aws:rds:us-east-1:123456789012:cluster:leak",
            "secretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:leak",
        }
        for secret, sql in (
            (DATA_API_SECRET, "SELECT 1"),
            (DATA_API_SECRET, "SELECT no_such_column"),
            (WRONG_GUESS, "SELECT 1"),
        ):
            rds = boto3.client(
                "rds-data",
                endpoint_url=f"http://127.0.0.1:{port}",
                region_name="us-east-1",
                aws_access_key_id=KEY_ID,
                aws_secret_access_key=secret,
                config=Config(retries={"max_attempts": 1, "mode": "standard"}),
            )
            try:
                seen.append(repr(rds.execute_statement(**arns, sql=sql)))
            except Exception as exc:
                seen += _exception_texts(exc)
        seen.append(_http(f"http://127.0.0.1:{port}/Execute"))
    finally:
        _stop(proc)
        out_file.close()
        err_file.close()
    assert_clean("data api", [out_path.read_text(), err_path.read_text(), *seen])


def test_the_demo_writes_no_secret(secret_pg: PostgresServer, tmp_path: Path) -> None:
    dsn = f"postgresql://postgres:{UPSTREAM_PW}@127.0.0.1:{secret_pg.port}/postgres"
    report, data, logs = tmp_path / "report.html", tmp_path / "report.json", tmp_path / "logs"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetpool.cli",
            "demo",
            "--dsn",
            dsn,
            "--strategies",
            "fleetpool,proxy",
            "--duration",
            "12",
            "--out",
            str(report),
            "--json",
            str(data),
            "--logs",
            str(logs),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    written = [done.stdout, done.stderr, report.read_text(), data.read_text()]
    written += [p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file()]
    assert json.loads(data.read_text())["strategies"]
    assert len(written) > 4  # container logs were kept
    assert_clean("demo", written)
