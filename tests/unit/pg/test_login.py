"""Both login state machines against each other, on bytes: the proxy's BackendLogin
(as a client) talking to its FrontendLogin (as a server)."""

from __future__ import annotations

import time

import pytest

from fleetpool.errors import ServerLoginError
from fleetpool.pg import messages as m
from fleetpool.pg.auth import ScramVerifier, md5_stored
from fleetpool.pg.codec import BackendDecoder, FrontendDecoder, Message, StartupMessage
from fleetpool.pg.login import BackendLogin, FrontendLogin
from fleetpool.tokens import make_token


def messages(data: bytes, decoder: BackendDecoder | FrontendDecoder) -> list[Message]:
    decoder.receive_data(data)
    out = []
    while True:
        event = decoder.next_event()
        if not isinstance(event, Message):
            return out
        out.append(event)


def converse(method: str, secret: str | None, password: str, token_secret: str = "") -> bool:
    server = FrontendLogin("app", method, secret, token_secret)
    client = BackendLogin("app", password)
    to_client = BackendDecoder()
    to_server = FrontendDecoder()
    to_server.receive_data(client.startup({"user": "app"}))
    assert isinstance(to_server.next_event(), StartupMessage)
    pending = server.start()
    for _ in range(10):
        if server.ok or server.failed:
            break
        for msg in messages(pending, to_client):
            reply = client.receive(msg)
            pending = b""
            for answer in messages(reply, to_server):
                pending += server.receive(answer, time.time())
    if server.ok:
        # The rest of a successful login, as the proxy completes it.
        for msg in messages(pending + m.auth_ok() + m.ready_for_query(), to_client):
            client.receive(msg)
        assert client.done
    return server.ok


@pytest.mark.parametrize(
    ("method", "secret"),
    [
        ("scram-sha-256", "s3cret"),
        ("scram-sha-256", str(ScramVerifier.from_password("s3cret"))),
        ("md5", "s3cret"),
        ("md5", md5_stored("app", "s3cret")),
        ("md5", str(ScramVerifier.from_password("s3cret"))),  # md5 switches to SCRAM
        ("password", "s3cret"),
    ],
)
def test_right_password_logs_in_wrong_one_does_not(method: str, secret: str) -> None:
    assert converse(method, secret, "s3cret")
    assert not converse(method, secret, "wrong")


def test_trust_and_tokens() -> None:
    assert converse("trust", "anything", "")
    token = make_token("k", "app", time.time())
    assert converse("scram-sha-256", None, token, token_secret="k")
    assert not converse("scram-sha-256", None, token, token_secret="other")
    assert not converse("scram-sha-256", None, "s3cret")  # unknown user, no tokens


def test_backend_login_reports_the_server_refusal() -> None:
    login = BackendLogin("app", "pw")
    error = m.error_response("28P01", "password authentication failed", severity="FATAL")
    (msg,) = messages(error, BackendDecoder())
    with pytest.raises(ServerLoginError) as info:
        login.receive(msg)
    assert info.value.auth and info.value.code == "28P01"
    full = m.error_response("53300", "sorry, too many clients already", severity="FATAL")
    (msg,) = messages(full, BackendDecoder())
    with pytest.raises(ServerLoginError) as info:
        BackendLogin("app", "pw").receive(msg)
    assert info.value.capacity and not info.value.auth


def test_backend_login_collects_parameters_and_keys() -> None:
    login = BackendLogin("app", "pw")
    data = (
        m.auth_ok()
        + m.parameter_status("client_encoding", "UTF8")
        + m.backend_key_data(42, 7)
        + m.ready_for_query()
    )
    for msg in messages(data, BackendDecoder()):
        assert login.receive(msg) == b""
    assert login.done and login.params == {"client_encoding": "UTF8"}
    assert (login.pid, login.key) == (42, 7)
