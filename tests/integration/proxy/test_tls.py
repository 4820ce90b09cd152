"""TLS from the proxy to the server: verify-full refuses a certificate that does not
name the host, verify-ca one from another CA, and both accept the right one -- against
a real PostgreSQL with ssl=on."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fleetpool.errors import ConfigError
from fleetpool.pg.codec import SSLRequest
from fleetpool.proxy import ProxyConfig
from fleetpool.proxy.config import Upstream
from fleetpool_testing.postgres import PostgresServer
from fleetpool_testing.processes import run_user
from tests.tls_certs import Issued, TestCA

from .conftest import ProxyHandle

pytestmark = pytest.mark.integration

CURRENT_CERT, CURRENT_KEY = "current.crt", "current.key"


class Material:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = TestCA(folder)
        self.other_ca = TestCA(folder, "another CA")
        # Names the host the proxy dials (127.0.0.1), as a SAN IP address.
        self.right = self.ca.issue("right", "db.test", dns=("localhost",), ips=("127.0.0.1",))
        self.wrong_name = self.ca.issue("wrong-name", "db.wrong.invalid", dns=("db.wrong.invalid",))
        self.foreign = self.other_ca.issue("foreign", "db.test", ips=("127.0.0.1",))


def _readable_by(folder: Path, user: Any) -> None:
    """Let the server's account read the keys (PostgreSQL wants them 0600 and its own)."""
    os.chmod(folder, 0o755)
    if user is None:
        return
    for path in folder.iterdir():
        os.chown(path, user.pw_uid, user.pw_gid)


@pytest.fixture(scope="module")
def material() -> Iterator[Material]:
    folder = Path(tempfile.mkdtemp(prefix="fleetpool-tls-"))
    try:
        mat = Material(folder)
        shutil.copy(mat.right.cert, folder / CURRENT_CERT)
        shutil.copy(mat.right.key, folder / CURRENT_KEY)
        _readable_by(folder, run_user(PostgresServer.run_as))
        yield mat
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_server(material: Material) -> Iterator[PostgresServer]:
    server = PostgresServer(
        settings={
            "ssl": "on",
            "ssl_cert_file": str(material.folder / CURRENT_CERT),
            "ssl_key_file": str(material.folder / CURRENT_KEY),
        }
    )
    try:
        server.start()
    except Exception as exc:  # pragma: no cover - no PostgreSQL binaries
        pytest.skip(f"cannot start PostgreSQL: {exc}")
    try:
        yield server
    finally:
        server.close()


def _served_certificate(server: PostgresServer) -> bytes:
    """The DER certificate the server presents now (SSLRequest, then a handshake)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(SSLRequest().encode())
        assert sock.recv(1) == b"S"
        with ctx.wrap_socket(sock) as tls:
            return tls.getpeercert(binary_form=True) or b""


def _present(server: PostgresServer, issued: Issued) -> None:
    """Make the server present ``issued``: the files it was started with are replaced
    and re-read on reload."""
    for src, dst in ((issued.cert, CURRENT_CERT), (issued.key, CURRENT_KEY)):
        shutil.copy(src, src.parent / dst)
    want = ssl.PEM_cert_to_DER_cert(issued.cert.read_text())
    server.execute("SELECT pg_reload_conf()")
    # The postmaster reloads asynchronously: wait (bounded) for the new certificate.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _served_certificate(server) == want:
            return
        time.sleep(0.02)
    raise AssertionError("the server did not reload its certificate")


def _upstream(server: PostgresServer) -> Upstream:
    return Upstream([(server.host, server.port)], "postgres", "", "postgres")


def _proxy(proxy_factory: Any, server: PostgresServer, **tls: Any) -> ProxyHandle:
    handle: ProxyHandle = proxy_factory(upstream=_upstream(server), **tls)
    return handle


def _ssl_in_use(handle: ProxyHandle) -> bool:
    with psycopg.connect(handle.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    return bool(row and row[0])


def test_verify_full_accepts_the_right_certificate(
    proxy_factory: Any, tls_server: PostgresServer, material: Material
) -> None:
    _present(tls_server, material.right)
    handle = _proxy(
        proxy_factory, tls_server, server_tls="verify-full", server_ca_file=str(material.ca.path)
    )
    assert _ssl_in_use(handle)


def test_verify_full_refuses_a_certificate_for_another_name(
    proxy_factory: Any, tls_server: PostgresServer, material: Material
) -> None:
    _present(tls_server, material.wrong_name)
    try:
        handle = _proxy(
            proxy_factory,
            tls_server,
            server_tls="verify-full",
            server_ca_file=str(material.ca.path),
        )
        with pytest.raises(psycopg.OperationalError) as err:
            psycopg.connect(handle.dsn(), autocommit=True, connect_timeout=10)
        text = str(err.value)
        # The error names the server and the reason.
        assert f"127.0.0.1:{tls_server.port}" in text
        assert "certificate" in text and "mismatch" in text, text
        assert handle.proxy.stats.server_connects == 0
        # verify-ca checks the chain only: the same certificate passes.
        lenient = _proxy(
            proxy_factory, tls_server, server_tls="verify-ca", server_ca_file=str(material.ca.path)
        )
        assert _ssl_in_use(lenient)
    finally:
        _present(tls_server, material.right)


def test_verify_ca_refuses_a_certificate_of_another_ca(
    proxy_factory: Any, tls_server: PostgresServer, material: Material
) -> None:
    _present(tls_server, material.foreign)
    try:
        handle = _proxy(
            proxy_factory, tls_server, server_tls="verify-ca", server_ca_file=str(material.ca.path)
        )
        with pytest.raises(psycopg.OperationalError, match="certificate") as err:
            psycopg.connect(handle.dsn(), autocommit=True, connect_timeout=10)
        assert "issuer" in str(err.value), str(err.value)
        # require encrypts without verifying (libpq's meaning): it connects.
        assert _ssl_in_use(_proxy(proxy_factory, tls_server, server_tls="require"))
    finally:
        _present(tls_server, material.right)


def test_require_refuses_a_server_without_tls(proxy_factory: Any, upstream: Upstream) -> None:
    # The shared test server runs without ssl.
    handle: ProxyHandle = proxy_factory(server_tls="require")
    with pytest.raises(psycopg.OperationalError, match="does not accept TLS"):
        psycopg.connect(handle.dsn(), autocommit=True, connect_timeout=10)


def test_failover_probe_verifies_too(
    proxy_factory: Any, tls_server: PostgresServer, material: Material
) -> None:
    """The engine's own probe connections (max_connections, failover) use the same
    verification as pooled connections."""
    import asyncio

    _present(tls_server, material.wrong_name)
    try:
        handle = _proxy(
            proxy_factory,
            tls_server,
            server_tls="verify-full",
            server_ca_file=str(material.ca.path),
        )
        engine = handle.proxy.engine
        fut = asyncio.run_coroutine_threadsafe(
            engine.probe(tls_server.host, tls_server.port, 5), handle.loop
        )
        with pytest.raises(psycopg.OperationalError, match="certificate"):
            fut.result(15)
    finally:
        _present(tls_server, material.right)


def test_config_errors_name_the_setting(upstream: Upstream, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="server_ca_file"):
        ProxyConfig(upstream=upstream, server_tls="verify-full")
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    with pytest.raises(ConfigError, match="only with server_tls = 'verify-ca' or 'verify-full'"):
        ProxyConfig(upstream=upstream, server_tls="require", server_ca_file=str(bundle))
    with pytest.raises(ConfigError, match="not a readable file"):
        ProxyConfig(
            upstream=upstream, server_tls="verify-full", server_ca_file=str(tmp_path / "nope")
        )
    with pytest.raises(ConfigError, match="server_tls must be one of"):
        ProxyConfig(upstream=upstream, server_tls="verify")  # type: ignore[arg-type]
