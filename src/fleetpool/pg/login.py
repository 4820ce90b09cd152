# Strategy: both sides of a PostgreSQL login as sans-I/O state machines (message in,
# bytes out), so authentication is tested on bytes and the asyncio connections only
# move them.
#
# * FrontendLogin: the proxy authenticating a client (trust, cleartext password or a
#   signed token, md5, SCRAM-SHA-256 and, over TLS, SCRAM-SHA-256-PLUS, or a client
#   certificate whose CN is the user). Secrets are a password, an ``md5...`` hash or a
#   ``SCRAM-SHA-256$...`` verifier; md5 switches to SCRAM for a SCRAM verifier (as
#   PostgreSQL does). Failures say nothing about why: a user the proxy does not know
#   goes through the same exchange as one with a wrong password (a made-up verifier
#   that nothing matches), so the protocol does not tell which users exist.
# * BackendLogin: the proxy logging in to a server (cleartext, md5, SCRAM-SHA-256),
#   collecting ParameterStatus values and BackendKeyData until ReadyForQuery.
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence

from ..errors import RemoteProtocolError, ServerLoginError
from ..tokens import verify_token
from . import messages as m
from .auth import (
    DEFAULT_ITERATIONS,
    ScramClient,
    ScramServer,
    ScramVerifier,
    md5_password,
    md5_response_from_hash,
)
from .codec import Message, encode_startup

AUTH_FAILED = "28P01"


class FrontendLogin:
    """Authenticate one client. Call :meth:`start`, then :meth:`receive` per message.

    Both return the bytes to send to the client; afterwards ``ok`` (authenticated) or
    ``failed`` (send a FATAL 28P01 and close) says how it ended.
    """

    __slots__ = (
        "_binding",
        "_cert_user",
        "_salt",
        "_scram",
        "_secret",
        "_step",
        "_token_secret",
        "_verifier",
        "failed",
        "method",
        "ok",
        "user",
    )

    def __init__(
        self,
        user: str,
        method: str,
        secret: str | None,
        token_secret: str | Sequence[str] = "",
        verifier: Callable[[str, str], ScramVerifier] | None = None,
        *,
        binding: bytes | None = None,
        cert_user: str | None = None,
    ) -> None:
        """``binding``: the TLS connection's ``tls-server-end-point`` data (offers
        SCRAM-SHA-256-PLUS); ``cert_user``: the CN of the client's verified
        certificate (method ``cert``)."""
        self.user = user
        self.method = method
        self._secret = secret
        # (several during a rotation: the current secret and the previous one)
        self._token_secret = (
            (token_secret,) if isinstance(token_secret, str) else tuple(token_secret)
        )
        self._token_secret = tuple(t for t in self._token_secret if t)
        self._verifier = verifier or scram_verifier
        self._step = ""
        self._salt = b""
        self._scram: ScramServer | None = None
        self._binding = binding
        self._cert_user = cert_user
        self.ok = False
        self.failed = False

    def start(self) -> bytes:
        method = self.method
        secret = self._secret
        if method == "cert":
            # The TLS handshake verified the chain; the certificate must name the user.
            return self._finish(self._cert_user is not None and self._cert_user == self.user)
        if secret is None and self._token_secret:
            method = "password"  # tokens travel as cleartext passwords (use TLS)
        if method == "trust":
            if secret is None:
                return self._finish(False)
            self.ok = True
            return b""
        if method == "password":
            self._step = "password"
            return m.auth_request(m.AUTH_CLEARTEXT)
        if method == "md5" and not (secret or "").startswith("SCRAM-SHA-256$"):
            self._step = "md5"
            self._salt = secrets.token_bytes(4)
            return m.auth_request(m.AUTH_MD5, self._salt)
        self._step = "sasl-initial"
        if self._binding is not None:
            return m.auth_sasl(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])
        return m.auth_sasl(["SCRAM-SHA-256"])

    def receive(self, msg: Message, now: float) -> bytes:
        if msg.type != m.PASSWORD:
            raise RemoteProtocolError(f"expected a password message, got {msg.type!r}")
        step = self._step
        secret = self._secret
        if step == "password":
            raw = m.parse_password(msg.body)
            given = raw.decode(errors="replace")
            good = False
            if secret is not None and not secret.startswith(("md5", "SCRAM-SHA-256$")):
                # (bytes: compare_digest refuses str with non-ASCII characters)
                good = secrets.compare_digest(raw, secret.encode())
            if not good and self._token_secret:
                good = verify_token(self._token_secret, given, self.user, now)
            return self._finish(good)
        if step == "md5":
            given_b = m.parse_password(msg.body)
            if secret is None:  # an unknown user: the same exchange, never a match
                return self._finish(False)
            if secret.startswith("md5") and len(secret) == 35:
                want = md5_response_from_hash(secret, self._salt)
            else:
                want = md5_password(self.user, secret, self._salt)
            return self._finish(secrets.compare_digest(given_b, want))
        if step == "sasl-initial":
            mech, data = m.parse_sasl_initial_response(msg.body)
            plus = mech == "SCRAM-SHA-256-PLUS" and self._binding is not None
            if mech != "SCRAM-SHA-256" and not plus:
                return self._finish(False)
            # An unknown user gets a verifier nothing matches: the same exchange.
            verifier = self._verifier(self.user, secret) if secret is not None else _mock(self.user)
            self._scram = ScramServer(
                verifier,
                binding=self._binding if plus else None,
                offered_plus=self._binding is not None,
            )
            self._step = "sasl-final" if secret is not None else "sasl-mock"
            return m.auth_request(m.AUTH_SASL_CONTINUE, self._scram.first(data))
        if step == "sasl-mock":
            return self._finish(False)
        if step == "sasl-final":
            assert self._scram is not None
            final = self._scram.final(msg.body)
            if final is None:
                return self._finish(False)
            self._finish(True)
            return m.auth_request(m.AUTH_SASL_FINAL, final)
        raise RemoteProtocolError("unexpected password message")

    def _finish(self, good: bool) -> bytes:
        self._step = "done"
        self.ok = good
        self.failed = not good
        return b""


_MOCK_KEY = secrets.token_bytes(32)


def _mock(user: str) -> ScramVerifier:
    """A made-up verifier for a user the proxy does not know: its salt is stable per
    user (as a real one would be) and no password matches it."""
    salt = hashlib.sha256(_MOCK_KEY + user.encode()).digest()[:16]
    return ScramVerifier(salt, DEFAULT_ITERATIONS, secrets.token_bytes(32), secrets.token_bytes(32))


def scram_verifier(user: str, secret: str) -> ScramVerifier:
    """The SCRAM verifier of a stored secret (a verifier already, or a password)."""
    if secret.startswith("SCRAM-SHA-256$"):
        return ScramVerifier.parse(secret)
    return ScramVerifier.from_password(secret)


class BackendLogin:
    """Log in to a server: :meth:`startup` first, then :meth:`receive` per message.

    ``receive`` returns bytes to send (often none) and raises ServerLoginError when the
    server refuses; ``done`` turns true at ReadyForQuery, with ``params`` (reported
    parameters), ``pid``/``key`` (BackendKeyData) and ``tx_status`` filled in.
    """

    __slots__ = ("_password", "_scram", "_user", "done", "key", "params", "pid", "tx_status")

    def __init__(self, user: str, password: str) -> None:
        self._user = user
        self._password = password
        self._scram: ScramClient | None = None
        self.params: dict[str, str] = {}
        self.pid = 0
        self.key = 0
        self.tx_status = m.IDLE
        self.done = False

    @staticmethod
    def startup(params: dict[str, str]) -> bytes:
        return encode_startup(params)

    def receive(self, msg: Message) -> bytes:
        t = msg.type
        if t == m.AUTHENTICATION:
            code, data = m.parse_auth_request(msg.body)
            if code == m.AUTH_OK:
                return b""
            if code == m.AUTH_CLEARTEXT:
                return m.password_message(self._password.encode())
            if code == m.AUTH_MD5:
                return m.password_message(md5_password(self._user, self._password, data))
            if code == m.AUTH_SASL:
                if "SCRAM-SHA-256" not in m.parse_sasl_mechanisms(data):
                    raise ServerLoginError("the server offers no supported SASL mechanism")
                self._scram = ScramClient(self._password)
                return m.sasl_initial_response("SCRAM-SHA-256", self._scram.first())
            if code == m.AUTH_SASL_CONTINUE and self._scram is not None:
                return m.sasl_response(self._scram.final(data))
            if code == m.AUTH_SASL_FINAL and self._scram is not None:
                self._scram.verify(data)
                return b""
            raise ServerLoginError(f"the server asks for unsupported authentication ({code})")
        if t == m.PARAMETER_STATUS:
            name, value = m.parse_parameter_status(msg.body)
            self.params[name] = value
        elif t == m.BACKEND_KEY_DATA:
            self.pid, self.key = m.parse_backend_key_data(msg.body)
        elif t == m.ERROR_RESPONSE:
            fields = m.parse_error_fields(msg.body)
            sqlstate = fields.get("C", "08006")
            raise ServerLoginError(
                f"server refused login: {fields.get('M', '')}",
                sqlstate,
                auth=sqlstate.startswith("28"),
                capacity=sqlstate == "53300",
                permanent=sqlstate.startswith("3D"),  # no such database
                detail=fields.get("M", ""),
                raw=msg.encode(),
            )
        elif t == m.READY_FOR_QUERY:
            self.tx_status = msg.body[:1] or m.IDLE
            self.done = True
        return b""
