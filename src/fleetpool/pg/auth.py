# Strategy: PostgreSQL password authentication as pure objects (no I/O).
#
# SCRAM-SHA-256 (RFC 5802 / RFC 7677) is implemented on both sides: ``ScramClient``
# for the proxy logging in to the server, ``ScramServer`` for clients logging in to the
# proxy -- which also speaks SCRAM-SHA-256-PLUS (channel binding ``tls-server-end-point``:
# the client proves it sees the proxy's own certificate, so a man in the middle holding
# another certificate cannot relay the login) when the connection is TLS. The server
# side works from a verifier (salt, iterations, StoredKey, ServerKey) -- the same
# thing PostgreSQL keeps in pg_authid -- so the proxy can accept either plain passwords
# or stored verifiers in its user list. md5 is the legacy
# ``md5(md5(password + user) + salt)`` scheme.
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from ..errors import RemoteProtocolError

DEFAULT_ITERATIONS = 4096
CHANNEL_BINDING = b"tls-server-end-point"


def md5_password(user: str, password: str, salt: bytes) -> bytes:
    """The md5 response for ``salt``: ``md5`` + hex(md5(hex(md5(password+user)) + salt))."""
    inner = hashlib.md5((password + user).encode()).hexdigest().encode()
    return b"md5" + hashlib.md5(inner + salt).hexdigest().encode()


def md5_response_from_hash(stored: str, salt: bytes) -> bytes:
    """The md5 response from a stored ``md5<hex>`` hash (as in pg_authid)."""
    return b"md5" + hashlib.md5(stored[3:].encode() + salt).hexdigest().encode()


def md5_stored(user: str, password: str) -> str:
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


def _hi(password: bytes, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password, salt, iterations)


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _attrs(message: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = message.decode()
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError("SCRAM message is not UTF-8") from exc
    for part in text.split(","):
        if len(part) >= 2 and part[1] == "=":
            out.setdefault(part[0], part[2:])
    return out


@dataclass(frozen=True, slots=True)
class ScramVerifier:
    """What a server needs to check a SCRAM-SHA-256 login (never the password)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def from_password(
        cls, password: str, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
    ) -> ScramVerifier:
        salt = salt if salt is not None else secrets.token_bytes(16)
        salted = _hi(password.encode(), salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        return cls(salt, iterations, _h(client_key), _hmac(salted, b"Server Key"))

    @classmethod
    def parse(cls, text: str) -> ScramVerifier:
        """Parse ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``."""
        try:
            mech, params, keys = text.split("$")
            iterations, salt = params.split(":")
            stored, server = keys.split(":")
            if mech != "SCRAM-SHA-256":
                raise ValueError(mech)
            return cls(
                base64.b64decode(salt, validate=True),
                int(iterations),
                base64.b64decode(stored, validate=True),
                base64.b64decode(server, validate=True),
            )
        except ValueError as exc:
            raise ValueError(f"not a SCRAM-SHA-256 verifier: {text[:20]}...") from exc

    def __str__(self) -> str:
        b64 = base64.b64encode
        return (
            f"SCRAM-SHA-256${self.iterations}:{b64(self.salt).decode()}$"
            f"{b64(self.stored_key).decode()}:{b64(self.server_key).decode()}"
        )


class ScramClient:
    """Client side of SCRAM-SHA-256: ``first()``, ``final(server_first)``, ``verify(...)``."""

    def __init__(
        self, password: str, nonce: str | None = None, binding: bytes | None = None
    ) -> None:
        """``binding``: the server certificate's ``tls-server-end-point`` data, for
        SCRAM-SHA-256-PLUS (None: no channel binding)."""
        self._password = password.encode()
        self._nonce = nonce or base64.b64encode(secrets.token_bytes(18)).decode()
        self._bare = f"n=,r={self._nonce}".encode()
        self._server_signature = b""
        self._gs2 = b"p=" + CHANNEL_BINDING + b",," if binding is not None else b"n,,"
        self._c = base64.b64encode(self._gs2 + (binding or b"")).decode()

    def first(self) -> bytes:
        return self._gs2 + self._bare

    def final(self, server_first: bytes) -> bytes:
        attrs = _attrs(server_first)
        nonce, salt, iterations = attrs.get("r", ""), attrs.get("s", ""), attrs.get("i", "")
        if not nonce.startswith(self._nonce) or not salt or not iterations.isdigit():
            raise RemoteProtocolError("invalid SCRAM server-first message")
        salted = _hi(self._password, base64.b64decode(salt), int(iterations))
        client_key = _hmac(salted, b"Client Key")
        without_proof = f"c={self._c},r={nonce}".encode()
        auth_message = self._bare + b"," + server_first + b"," + without_proof
        signature = _hmac(_h(client_key), auth_message)
        proof = base64.b64encode(_xor(client_key, signature))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return without_proof + b",p=" + proof

    def verify(self, server_final: bytes) -> None:
        attrs = _attrs(server_final)
        if "e" in attrs:
            raise RemoteProtocolError(f"SCRAM error from server: {attrs['e']}")
        got = base64.b64decode(attrs.get("v", ""))
        if not hmac.compare_digest(got, self._server_signature):
            raise RemoteProtocolError("SCRAM server signature does not match")


class ScramServer:
    """Server side of SCRAM-SHA-256 for one login attempt.

    ``first(client_first) -> server_first``; ``final(client_final) -> server_final``
    returns ``None`` when the proof is wrong (the caller sends 28P01).

    ``binding``: the connection's ``tls-server-end-point`` data when the client chose
    SCRAM-SHA-256-PLUS (its gs2 header must then ask for exactly that binding);
    ``offered_plus``: PLUS was offered, so a client saying "y" (I could bind, but
    think you cannot) is seeing a downgrade and is refused.
    """

    def __init__(
        self,
        verifier: ScramVerifier,
        nonce: str | None = None,
        *,
        binding: bytes | None = None,
        offered_plus: bool = False,
    ) -> None:
        self._v = verifier
        self._nonce = nonce or base64.b64encode(secrets.token_bytes(18)).decode()
        self._client_bare = b""
        self._server_first = b""
        self._full_nonce = ""
        self._binding = binding
        self._offered_plus = offered_plus
        self._expected_c = b""

    def first(self, client_first: bytes) -> bytes:
        head, sep, bare = client_first.partition(b",")
        if not sep:
            raise RemoteProtocolError("malformed SCRAM client-first message")
        authzid, sep, bare = bare.partition(b",")
        if not sep:
            raise RemoteProtocolError("malformed SCRAM client-first message")
        gs2 = head + b"," + authzid + b","
        if self._binding is not None:
            if head != b"p=" + CHANNEL_BINDING:
                raise RemoteProtocolError(
                    "SCRAM-SHA-256-PLUS needs channel binding tls-server-end-point"
                )
            self._expected_c = base64.b64encode(gs2 + self._binding)
        elif head == b"n" or (head == b"y" and not self._offered_plus):
            self._expected_c = base64.b64encode(gs2)
        elif head == b"y":
            raise RemoteProtocolError("SCRAM channel binding negotiation error (downgrade?)")
        else:
            raise RemoteProtocolError("SCRAM channel binding needs SCRAM-SHA-256-PLUS")
        client_nonce = _attrs(bare).get("r", "")
        if not client_nonce:
            raise RemoteProtocolError("SCRAM client-first message has no nonce")
        self._client_bare = bare
        self._full_nonce = client_nonce + self._nonce
        salt = base64.b64encode(self._v.salt).decode()
        self._server_first = f"r={self._full_nonce},s={salt},i={self._v.iterations}".encode()
        return self._server_first

    def final(self, client_final: bytes) -> bytes | None:
        without_proof, sep, proof_part = client_final.rpartition(b",p=")
        if not sep:
            raise RemoteProtocolError("SCRAM client-final message has no proof")
        attrs = _attrs(without_proof)
        if attrs.get("r") != self._full_nonce:
            return None
        if attrs.get("c", "").encode() != self._expected_c:
            return None  # channel binding data that is not this connection's
        try:
            proof = base64.b64decode(proof_part, validate=True)
        except ValueError:
            return None
        auth_message = self._client_bare + b"," + self._server_first + b"," + without_proof
        signature = _hmac(self._v.stored_key, auth_message)
        if len(proof) != len(signature):
            return None
        client_key = _xor(proof, signature)
        if not hmac.compare_digest(_h(client_key), self._v.stored_key):
            return None
        server_signature = _hmac(self._v.server_key, auth_message)
        return b"v=" + base64.b64encode(server_signature)
