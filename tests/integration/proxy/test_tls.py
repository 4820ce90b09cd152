"""TLS from the proxy to the server: verify-full refuses a certificate that does not
name the host, verify-ca one from another CA, and both accept the right one -- against
a real PostgreSQL with ssl=on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fleetpool.errors import ConfigError
from fleetpool.proxy import ProxyConfig
from fleetpool.proxy.config import Upstream
from fleetpool_testing import MissingBinary, PostgresServer
from tests.tls_certs import TlsPostgres

from .conftest import ProxyHandle

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_pg() -> Iterator[TlsPostgres]:
    try:
        pg = TlsPostgres()
    except MissingBinary as exc:  # pragma: no cover - no PostgreSQL binaries
        pytest.skip(str(exc))
    with pg:
        yield pg


def _upstream(server: PostgresServer) -> Upstream:
    return Upstream([(server.host, server.port)], "postgres", "", "postgres")


def _proxy(proxy_factory: Any, server: PostgresServer, **tls: Any) -> ProxyHandle:
    handle: ProxyHandle = proxy_factory(upstream=_upstream(server), **tls)
    return handle


def _ssl_in_use(handle: ProxyHandle) -> bool:
    with psycopg.connect(handle.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    return bool(row and row[0])


def test_verify_full_accepts_the_right_certificate(proxy_factory: Any, tls_pg: TlsPostgres) -> None:
    tls_pg.present(tls_pg.right)
    handle = _proxy(
        proxy_factory, tls_pg.server, server_tls="verify-full", server_ca_file=str(tls_pg.ca.path)
    )
    assert _ssl_in_use(handle)


def test_verify_full_refuses_a_certificate_for_another_name(
    proxy_factory: Any, tls_pg: TlsPostgres
) -> None:
    tls_pg.present(tls_pg.wrong_name)
    try:
        handle = _proxy(
            proxy_factory,
            tls_pg.server,
            server_tls="verify-full",
            server_ca_file=str(tls_pg.ca.path),
        )
        with pytest.raises(psycopg.OperationalError) as err:
            psycopg.connect(handle.dsn(), autocommit=True, connect_timeout=10)
        text = str(err.value)
        # The error names the server and the reason.
        assert f"127.0.0.1:{tls_pg.server.port}" in text
        assert "certificate" in text and "mismatch" in text, text
        assert handle.proxy.stats.server_connects == 0
        # verify-ca checks the chain only: the same certificate passes.
        lenient = _proxy(
            proxy_factory, tls_pg.server, server_tls="verify-ca", server_ca_file=str(tls_pg.ca.path)
        )
        assert _ssl_in_use(lenient)
    finally:
        tls_pg.present(tls_pg.right)


def test_verify_ca_refuses_a_certificate_of_another_ca(
    proxy_factory: Any, tls_pg: TlsPostgres
) -> None:
    tls_pg.present(tls_pg.foreign)
    try:
        handle = _proxy(
            proxy_factory, tls_pg.server, server_tls="verify-ca", server_ca_file=str(tls_pg.ca.path)
        )
        with pytest.raises(psycopg.OperationalError, match="certificate") as err:
            psycopg.connect(handle.dsn(), autocommit=True, connect_timeout=10)
        assert "issuer" in str(err.value), str(err.value)
        # require encrypts without verifying (libpq's meaning): it connects.
        assert _ssl_in_use(_proxy(proxy_factory, tls_pg.server, server_tls="require"))
    finally:
        tls_pg.present(tls_pg.right)


def test_require_refuses_a_server_without_tls(proxy_factory: Any, upstream: Upstream) -> None:
    # The shared test server runs without ssl.
    handle: ProxyHandle = proxy_factory(server_tls="require")
    with pytest.raises(psycopg.OperationalError, match="does not accept TLS"):
        psycopg.connect(handle.dsn(), autocommit=True, connect_timeout=10)


def test_failover_probe_verifies_too(proxy_factory: Any, tls_pg: TlsPostgres) -> None:
    """The engine's own probe connections (max_connections, failover) use the same
    verification as pooled connections."""
    import asyncio

    tls_pg.present(tls_pg.wrong_name)
    try:
        handle = _proxy(
            proxy_factory,
            tls_pg.server,
            server_tls="verify-full",
            server_ca_file=str(tls_pg.ca.path),
        )
        engine = handle.proxy.engine
        fut = asyncio.run_coroutine_threadsafe(
            engine.probe(tls_pg.server.host, tls_pg.server.port, 5), handle.loop
        )
        with pytest.raises(psycopg.OperationalError, match="certificate"):
            fut.result(15)
    finally:
        tls_pg.present(tls_pg.right)


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
