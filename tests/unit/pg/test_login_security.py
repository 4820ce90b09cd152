"""Login hardening on bytes: unknown users look like wrong passwords, SCRAM-SHA-256-PLUS
binds the login to the TLS connection (and refuses downgrades), client certificates
name the user, non-ASCII passwords compare safely."""

from __future__ import annotations

import time

import pytest

from fleetpool.errors import RemoteProtocolError
from fleetpool.pg import messages as m
from fleetpool.pg.auth import ScramClient, ScramServer, ScramVerifier
from fleetpool.pg.codec import FrontendDecoder, Message
from fleetpool.pg.login import FrontendLogin

BINDING = b"\x01" * 32


def _client_msgs(data: bytes) -> list[Message]:
    dec = FrontendDecoder()
    dec.receive_data(b"\x00\x00\x00\x09\x00\x03\x00\x00\x00")  # a startup packet first
    dec.next_event()
    dec.receive_data(data)
    out = []
    while isinstance(event := dec.next_event(), Message):
        out.append(event)
    return out


def scram_login(
    server: FrontendLogin, password: str, mech: str = "SCRAM-SHA-256", binding: bytes | None = None
) -> list[int]:
    """Run a SCRAM exchange; the authentication codes the server sent."""
    codes = [m.parse_auth_request(server.start()[5:])[0]]
    client = ScramClient(password, binding=binding)
    (msg,) = _client_msgs(m.sasl_initial_response(mech, client.first()))
    reply = server.receive(msg, time.time())
    if server.failed:
        return codes
    codes.append(m.parse_auth_request(reply[5:])[0])
    (msg,) = _client_msgs(m.sasl_response(client.final(m.parse_auth_request(reply[5:])[1])))
    server.receive(msg, time.time())
    return codes


def test_an_unknown_user_gets_the_same_exchange_as_a_wrong_password() -> None:
    known = FrontendLogin("app", "scram-sha-256", "s3cret")
    unknown = FrontendLogin("ghost", "scram-sha-256", None)
    assert scram_login(known, "wrong") == scram_login(unknown, "wrong")
    assert known.failed and unknown.failed
    for method in ("md5", "password"):
        server = FrontendLogin("ghost", method, None)
        first = server.start()
        assert first and not server.failed  # asks for a password, as for a known user
        (msg,) = _client_msgs(m.password_message(b"guess"))
        server.receive(msg, time.time())
        assert server.failed


def test_scram_plus_binds_the_login_to_the_connection() -> None:
    offered = FrontendLogin("app", "scram-sha-256", "s3cret", binding=BINDING)
    assert m.parse_sasl_mechanisms(m.parse_auth_request(offered.start()[5:])[1]) == [
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-256",
    ]
    good = FrontendLogin("app", "scram-sha-256", "s3cret", binding=BINDING)
    scram_login(good, "s3cret", "SCRAM-SHA-256-PLUS", BINDING)
    assert good.ok
    # A man in the middle's certificate: the client binds to different data.
    relayed = FrontendLogin("app", "scram-sha-256", "s3cret", binding=BINDING)
    scram_login(relayed, "s3cret", "SCRAM-SHA-256-PLUS", b"\x02" * 32)
    assert relayed.failed
    # A client that does not ask for binding still logs in.
    plain = FrontendLogin("app", "scram-sha-256", "s3cret", binding=BINDING)
    scram_login(plain, "s3cret")
    assert plain.ok
    # Without TLS, PLUS is neither offered nor accepted.
    no_tls = FrontendLogin("app", "scram-sha-256", "s3cret")
    scram_login(no_tls, "s3cret", "SCRAM-SHA-256-PLUS", BINDING)
    assert no_tls.failed


def test_a_downgraded_client_is_refused() -> None:
    """'y': the client supports binding but believes the server does not -- yet PLUS
    was offered, so someone removed it on the way."""
    server = ScramServer(ScramVerifier.from_password("pw"), offered_plus=True)
    with pytest.raises(RemoteProtocolError, match="downgrade"):
        server.first(b"y,,n=,r=abc")
    assert ScramServer(ScramVerifier.from_password("pw")).first(b"y,,n=,r=abc")


def test_client_certificates_name_the_user() -> None:
    for cn, ok in (("app", True), ("other", False), (None, False)):
        login = FrontendLogin("app", "cert", None, cert_user=cn)
        assert login.start() == b""
        assert login.ok is ok and login.failed is not ok


def test_non_ascii_cleartext_passwords() -> None:
    for given, ok in (("pässwörd", True), ("passwörd", False), ("\udcff", False)):
        server = FrontendLogin("app", "password", "pässwörd")
        server.start()
        (msg,) = _client_msgs(m.password_message(given.encode(errors="surrogateescape")))
        server.receive(msg, time.time())
        assert server.ok is ok
