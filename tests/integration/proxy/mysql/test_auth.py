"""How MySQL clients log in to the proxy: caching_sha2_password's full authentication
with the proxy's RSA key (a user known by a hash only, no TLS), TLS from the client,
signed tokens as cleartext passwords over TLS, and clients refused without TLS."""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest

from fleetpool.tokens import make_token
from tests.tls_certs import Issued, TestCA

from .conftest import MySQLProxy

pytestmark = pytest.mark.integration


def native_hash(password: str) -> str:
    """The ``*HEX`` hash MySQL keeps for mysql_native_password users."""
    inner = hashlib.sha1(password.encode()).digest()
    return "*" + hashlib.sha1(inner).hexdigest().upper()


@pytest.fixture
def proxy_cert(tmp_path: Path) -> Iterator[Issued]:
    ca = TestCA(tmp_path / "ca")
    yield ca.issue("proxy", "proxy.test", ips=("127.0.0.1",))


def _unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_a_hash_only_user_logs_in_through_rsa_without_tls(
    mysql_proxy_factory: Callable[..., MySQLProxy],
) -> None:
    pytest.importorskip("cryptography")
    proxy = mysql_proxy_factory(users={"hashed": native_hash("hashed-pw")})
    kw = proxy.kwargs(user="hashed", password="hashed-pw")
    with pymysql.connect(**kw) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(**proxy.kwargs(user="hashed", password="not-it"))
    assert info.value.args[0] == 1045


def test_tls_from_the_client_and_tokens_as_passwords(
    mysql_proxy_factory: Callable[..., MySQLProxy], proxy_cert: Issued
) -> None:
    secret = "token-secret-for-tests"
    proxy = mysql_proxy_factory(
        tls_cert=str(proxy_cert.cert),
        tls_key=str(proxy_cert.key),
        client_tls="require",
        token_secret=secret,
    )
    # Without TLS (PyMySQL otherwise prefers TLS when offered): refused, saying why.
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(**proxy.kwargs(ssl_disabled=True))
    assert "TLS" in info.value.args[1] or "insecure" in info.value.args[1]
    # With TLS: the user's password, then a token minted for a user the proxy does not
    # list (sent as mysql_clear_password, which the proxy accepts over TLS only).
    with pymysql.connect(**proxy.kwargs(ssl=_unverified())) as conn, conn.cursor() as cur:
        cur.execute("SELECT 2")
        assert cur.fetchone() == (2,)
    token = make_token(secret, "lambda-fn", time.time(), ttl=300)
    kw = proxy.kwargs(user="lambda-fn", password=token, ssl=_unverified())
    with pymysql.connect(**kw) as conn, conn.cursor() as cur:
        cur.execute("SELECT 3")
        assert cur.fetchone() == (3,)
    # A token for someone else is refused.
    stolen = proxy.kwargs(user="other-fn", password=token, ssl=_unverified())
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(**stolen)
    assert info.value.args[0] == 1045


def test_change_user_is_refused_clearly(mysql_proxy: MySQLProxy) -> None:
    """COM_CHANGE_USER (sent as PyMySQL would frame it; PyMySQL has no method for it)
    is answered with an error that says what to do, and the session goes on."""
    conn = pymysql.connect(**mysql_proxy.kwargs())
    try:
        conn._execute_command(0x11, b"root\x00\x00")  # user, empty auth response
        with pytest.raises(pymysql.err.MySQLError) as info:
            conn._read_packet()
        assert "connect again" in str(info.value)
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER() IS NOT NULL")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()


def test_a_tls_handshake_sent_with_the_ssl_request_is_not_lost(
    mysql_proxy_factory: Callable[..., MySQLProxy], proxy_cert: Issued
) -> None:
    # A client need not wait after its SSLRequest (the server sends nothing): its TLS
    # ClientHello may arrive in the same read. The proxy must hand it to TLS.
    from fleetpool.mysql.codec import encode_packet
    from fleetpool.mysql.constants import CLIENT_PROTOCOL_41, CLIENT_SECURE_CONNECTION
    from fleetpool.mysql.messages import build_ssl_request

    proxy = mysql_proxy_factory(
        tls_cert=str(proxy_cert.cert), tls_key=str(proxy_cert.key), client_tls="require"
    )
    host, port = proxy.kwargs()["host"], proxy.kwargs()["port"]
    with socket.create_connection((host, port), timeout=10) as sock:
        greeting = sock.recv(4096)
        assert greeting[4] == 10  # protocol version 10
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = _unverified().wrap_bio(incoming, outgoing, server_side=False)
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        request = build_ssl_request(CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION)
        sock.sendall(encode_packet(request, 1) + outgoing.read())  # one write
        for _ in range(20):  # a handful of round trips at most
            data = sock.recv(65536)
            assert data, "the proxy closed the connection during the TLS handshake"
            incoming.write(data)
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
        else:
            raise AssertionError("the TLS handshake did not finish")
        assert tls.version() is not None
