"""Clients over TLS: libpq's verify-full accepts the proxy's certificate, SCRAM-SHA-256-PLUS
binds the login to the connection (channel_binding=require), and auth_method = "cert"
logs in the user a verified client certificate names -- with psycopg (libpq)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.tls_certs import Issued, TestCA

from .conftest import USER, ProxyHandle

pytestmark = pytest.mark.integration


class Certs:
    def __init__(self, folder: Path) -> None:
        self.ca = TestCA(folder)
        self.proxy = self.ca.issue("proxy", "proxy.test", dns=("localhost",), ips=("127.0.0.1",))
        self.app = self.ca.issue("app", USER, client=True)
        self.other = self.ca.issue("other", "other", client=True)
        self.foreign = TestCA(folder, "foreign CA").issue("foreign", USER, client=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Certs]:
    yield Certs(tmp_path_factory.mktemp("client-tls"))


def _tls_dsn(handle: ProxyHandle, certs: Certs, client: Issued | None = None, **params: Any) -> str:
    params = {"sslmode": "verify-full", "sslrootcert": str(certs.ca.path), **params}
    if client is not None:
        params.update(sslcert=str(client.cert), sslkey=str(client.key))
    return handle.dsn(**params)


def test_scram_plus_over_verified_tls(proxy_factory: Any, certs: Certs) -> None:
    handle: ProxyHandle = proxy_factory(
        tls_cert=str(certs.proxy.cert), tls_key=str(certs.proxy.key), client_tls="require"
    )
    # libpq refuses unless the server offers, and completes, channel binding.
    dsn = _tls_dsn(handle, certs, channel_binding="require")
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.info.pgconn.ssl_in_use
        assert conn.execute("select 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(_tls_dsn(handle, certs, channel_binding="require", password="wrong"))


def test_client_certificate_names_the_user(proxy_factory: Any, certs: Certs) -> None:
    handle: ProxyHandle = proxy_factory(
        tls_cert=str(certs.proxy.cert),
        tls_key=str(certs.proxy.key),
        client_ca_file=str(certs.ca.path),
        client_tls="require",
        auth_method="cert",
        users={},  # no passwords at all: the certificate is the credential
    )
    with psycopg.connect(_tls_dsn(handle, certs, certs.app, password=""), autocommit=True) as c:
        assert c.execute("select 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="certificate authentication failed"):
        psycopg.connect(_tls_dsn(handle, certs, certs.other, password=""))  # CN "other"
    with pytest.raises(psycopg.OperationalError, match="certificate authentication failed"):
        psycopg.connect(_tls_dsn(handle, certs, None, password=""))  # no certificate
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(_tls_dsn(handle, certs, certs.foreign, password=""))  # unknown CA
    assert handle.proxy.stats.auth_failures >= 2
