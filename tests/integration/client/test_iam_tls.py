"""Database(iam_auth=True) sends its token only to a server whose certificate is
verified (verify-full with the URL's CA bundle by default, as the proxy's server_tls),
against a real PostgreSQL with ssl=on (trust auth: the token itself is not checked)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import fleetpool
from fleetpool.errors import ConfigError
from fleetpool_testing import MissingBinary
from tests.tls_certs import TlsPostgres

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_pg() -> Iterator[TlsPostgres]:
    try:
        pg = TlsPostgres()
    except MissingBinary as exc:  # pragma: no cover
        pytest.skip(str(exc))
    with pg:
        yield pg


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # generate_db_auth_token signs locally: fake credentials are enough, no API call.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFLEETPOOLTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def _db(url: str) -> fleetpool.Database:
    return fleetpool.Database(url, iam_auth=True, connect_timeout=5, handle_signals=False)


def _ssl_row(db: fleetpool.Database) -> Any:
    with db.connection() as conn:
        return conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()


def test_iam_needs_a_ca_bundle_and_tls(tls_pg: TlsPostgres, aws_env: None) -> None:
    base = f"postgresql://postgres@127.0.0.1:{tls_pg.server.port}/postgres"
    with pytest.raises(ConfigError, match=r"sslrootcert=.*truststore\.pki\.rds\.amazonaws\.com"):
        _db(base)
    for weak in ("disable", "allow", "prefer"):
        with pytest.raises(ConfigError, match="TLS is required"):
            _db(f"{base}?sslmode={weak}&sslrootcert={tls_pg.ca.path}")


def test_iam_verifies_the_server_certificate(tls_pg: TlsPostgres, aws_env: None) -> None:
    url = f"postgresql://postgres@127.0.0.1:{tls_pg.server.port}/postgres?sslrootcert={tls_pg.ca.path}"
    tls_pg.present(tls_pg.right)
    db = _db(url)
    try:
        assert _ssl_row(db) == (True,)
    finally:
        db.close()
    tls_pg.present(tls_pg.wrong_name)
    try:
        db = _db(url)
        try:
            with pytest.raises(fleetpool.DatabaseUnavailable, match="certificate"):
                _ssl_row(db)
        finally:
            db.close()
        # sslmode=require: the explicit opt-out (encrypted, not verified).
        lax = _db(url.split("?")[0] + "?sslmode=require")
        try:
            assert _ssl_row(lax) == (True,)
        finally:
            lax.close()
    finally:
        tls_pg.present(tls_pg.right)


def test_mysql_iam_context_verifies(tls_pg: TlsPostgres) -> None:
    import ssl

    from fleetpool.client._mysql import bearer_ssl

    ctx = bearer_ssl("mysql", {"ssl_ca": str(tls_pg.ca.path)})["ssl"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    ctx = bearer_ssl("mysql", {"ssl_ca": str(tls_pg.ca.path), "ssl_mode": "VERIFY_CA"})["ssl"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and not ctx.check_hostname
    with pytest.raises(ConfigError, match="ssl_ca="):
        bearer_ssl("mysql", {})
