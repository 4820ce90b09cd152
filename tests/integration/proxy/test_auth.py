"""Client authentication to the proxy, and the proxy's own login to the server."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fleetpool.pg.auth import ScramVerifier, md5_stored
from fleetpool.proxy import make_token

from .conftest import ProxyHandle, upstream_from_dsn

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("method", ["scram-sha-256", "md5", "password", "trust"])
def test_client_auth_methods(proxy_factory: Any, method: str) -> None:
    handle: ProxyHandle = proxy_factory(auth_method=method)
    with psycopg.connect(handle.dsn(), autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    if method != "trust":
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(handle.dsn(password="wrong"))
        assert handle.proxy.stats.auth_failures == 1


def test_unknown_user_refused(proxy: ProxyHandle) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(proxy.dsn(user="nobody", password="x"))


def test_stored_verifiers(proxy_factory: Any) -> None:
    users = {
        "scram_user": str(ScramVerifier.from_password("s-pass", iterations=4096)),
        "md5_user": md5_stored("md5_user", "m-pass"),
    }
    scram = proxy_factory(users=users, auth_method="scram-sha-256")
    with psycopg.connect(scram.dsn(user="scram_user", password="s-pass")) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(scram.dsn(user="scram_user", password="nope"))
    md5 = proxy_factory(users=users, auth_method="md5")
    with psycopg.connect(md5.dsn(user="md5_user", password="m-pass")) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_signed_tokens(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(token_secret="fleet-secret", users={})
    token = make_token("fleet-secret", "lambda_fn", time.time(), ttl=60)
    with psycopg.connect(handle.dsn(user="lambda_fn", password=token)) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    expired = make_token("fleet-secret", "lambda_fn", time.time() - 120, ttl=60)
    forged = make_token("other-secret", "lambda_fn", time.time(), ttl=60)
    for bad in (expired, forged):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(handle.dsn(user="lambda_fn", password=bad))


@pytest.mark.parametrize("server_auth", ["scram-sha-256", "md5"])
def test_proxy_logs_in_to_password_protected_server(
    pg_server_factory: Any, proxy_factory: Any, server_auth: str
) -> None:
    server = pg_server_factory(auth=server_auth, password="srv-pw", max_connections=20)
    handle: ProxyHandle = proxy_factory(upstream=upstream_from_dsn(server.dsn))
    with psycopg.connect(handle.dsn(), autocommit=True) as conn:
        assert conn.execute("select current_user").fetchone() == ("postgres",)


def test_wrong_upstream_password_fails_fast(pg_server_factory: Any, proxy_factory: Any) -> None:
    server = pg_server_factory(auth="scram-sha-256", password="srv-pw", max_connections=20)
    up = upstream_from_dsn(server.dsn)
    up.password = "not-it"
    handle: ProxyHandle = proxy_factory(upstream=up, connection_borrow_timeout=30)
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(handle.dsn())
    assert time.monotonic() - started < 10


def make_cert(tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return str(cert), str(key)


def test_client_tls_required(proxy_factory: Any, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    handle: ProxyHandle = proxy_factory(tls_cert=cert, tls_key=key, client_tls="require")
    with psycopg.connect(handle.dsn(sslmode="require"), autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.info.pgconn.ssl_in_use
    with pytest.raises(psycopg.OperationalError, match="requires TLS"):
        psycopg.connect(handle.dsn(sslmode="disable"))


def test_client_tls_optional(proxy_factory: Any, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    handle: ProxyHandle = proxy_factory(tls_cert=cert, tls_key=key, client_tls="allow")
    for mode in ("require", "disable", "prefer"):
        with psycopg.connect(handle.dsn(sslmode=mode), autocommit=True) as conn:
            assert conn.execute("select 1").fetchone() == (1,)


@pytest.fixture
def tls_server(pg_server_factory: Any) -> Any:
    import os
    import pwd
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="fp-tls-"))
    os.chmod(folder, 0o755)
    cert, key = make_cert(folder)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (cert, key):
            os.chown(path, user.pw_uid, user.pw_gid)
    os.chmod(key, 0o600)
    settings = {"ssl": "on", "ssl_cert_file": cert, "ssl_key_file": key}
    try:
        yield pg_server_factory(settings=settings, max_connections=20)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_server_tls_required(tls_server: Any, proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(
        upstream=upstream_from_dsn(tls_server.dsn), server_tls="require"
    )
    with psycopg.connect(handle.dsn(), autocommit=True) as conn:
        row = conn.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone()
        assert row == (True,)


def test_server_tls_required_but_refused(proxy_factory: Any) -> None:
    handle: ProxyHandle = proxy_factory(server_tls="require", connection_borrow_timeout=2)
    with pytest.raises(psycopg.OperationalError, match="TLS"):
        psycopg.connect(handle.dsn())
