from __future__ import annotations

import base64

import pytest

from fleetpool.errors import RemoteProtocolError
from fleetpool.pg.auth import (
    ScramClient,
    ScramServer,
    ScramVerifier,
    md5_password,
    md5_response_from_hash,
    md5_stored,
)
from fleetpool.tokens import make_token, verify_token


def test_scram_rfc7677_vector() -> None:
    # RFC 7677 section 3 (user "user", password "pencil").
    client = ScramClient("pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    client._bare = b"n=user,r=rOprNGfwEbeRWgbNEkqO"
    server_first = (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    final = client.final(server_first)
    assert final == (
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    client.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    with pytest.raises(RemoteProtocolError):
        client.verify(b"v=AAAA")


def test_scram_client_against_server() -> None:
    verifier = ScramVerifier.from_password("s3cret", iterations=1000)
    assert ScramVerifier.parse(str(verifier)) == verifier
    server = ScramServer(verifier)
    client = ScramClient("s3cret")
    final = server.final(client.final(server.first(client.first())))
    assert final is not None
    client.verify(final)


def test_scram_wrong_password_refused() -> None:
    server = ScramServer(ScramVerifier.from_password("right", iterations=1000))
    client = ScramClient("wrong")
    assert server.final(client.final(server.first(client.first()))) is None


def test_scram_server_refuses_channel_binding() -> None:
    server = ScramServer(ScramVerifier.from_password("x", iterations=1000))
    with pytest.raises(RemoteProtocolError):
        server.first(b"p=tls-server-end-point,,n=,r=abc")


def test_md5() -> None:
    salt = b"\x01\x02\x03\x04"
    direct = md5_password("app", "pw", salt)
    assert direct.startswith(b"md5") and len(direct) == 35
    assert md5_response_from_hash(md5_stored("app", "pw"), salt) == direct


def test_tokens() -> None:
    token = make_token("k", "app", now=1000.0, ttl=60)
    assert base64  # imported for readers: tokens are url-safe base64 parts
    assert verify_token("k", token, "app", now=1030.0)
    assert not verify_token("k", token, "app", now=1061.0)
    assert not verify_token("k", token, "other", now=1030.0)
    assert not verify_token("other-secret", token, "app", now=1030.0)
    assert not verify_token("k", token[:-2] + "xx", "app", now=1030.0)
    assert not verify_token("k", "garbage", "app", now=0)
