# Strategy: MySQL/MariaDB password authentication as pure functions (no I/O).
#
# Both sides of each plugin fleetpool speaks live here, so the proxy's frontend (clients
# log in to it) and backend (it logs in to servers) share one copy of every formula:
#
# * mysql_native_password: the client sends SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw))).
#   A server needs only SHA1(SHA1(pw)) -- the ``*HEX`` string in mysql.user -- to check it.
# * caching_sha2_password: the fast path sends
#   SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce), checkable from SHA256(SHA256(pw));
#   full authentication sends the plaintext: in clear over TLS, otherwise
#   XOR(pw + NUL, nonce) encrypted with the server's RSA key (OAEP, SHA-1), the client
#   having asked for the key with 0x02 when it had none.
# * mysql_clear_password: the password + NUL (only ever sent over TLS by fleetpool;
#   the proxy uses it for signed tokens, which it must see in clear).
# * client_ed25519 (MariaDB): an Ed25519 signature of the nonce with a key derived
#   from SHA-512(password). MariaDB hashes the *password* where RFC 8032 hashes a
#   32-byte seed, so a library that only accepts seeds cannot produce it; the few
#   curve operations are done here with Python integers (login only, ~ms).
#
# RSA needs the ``cryptography`` package (the ``mysql`` and ``proxy`` extras); it is
# imported only when RSA is used, and its absence is a ConfigError saying so.
from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, RemoteProtocolError

if TYPE_CHECKING:  # pragma: no cover
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

NONCE_SIZE = 20
ED25519_NONCE_SIZE = 32


def make_nonce(size: int = NONCE_SIZE) -> bytes:
    """A random nonce of printable ASCII without NUL or ``$``, as MySQL servers make them.

    (It travels NUL-terminated in the handshake, so it must contain no NUL.)
    """
    alphabet = bytes(c for c in range(0x21, 0x7F) if c != 0x24)
    return bytes(secrets.choice(alphabet) for _ in range(size))


def _sha1(*parts: bytes) -> bytes:
    h = hashlib.sha1()
    for p in parts:
        h.update(p)
    return h.digest()


def _sha256(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _pw(password: str | bytes) -> bytes:
    return password if isinstance(password, bytes) else password.encode()


# -- mysql_native_password --------------------------------------------------------------


def native_scramble(password: str | bytes, nonce: bytes) -> bytes:
    """The client's mysql_native_password response (empty for an empty password)."""
    pw = _pw(password)
    if not pw:
        return b""
    stage1 = _sha1(pw)
    return _xor(stage1, _sha1(nonce[:NONCE_SIZE], _sha1(stage1)))


def native_stage2(password: str | bytes) -> bytes:
    """SHA1(SHA1(password)): what a server keeps to check native logins."""
    return _sha1(_sha1(_pw(password)))


def native_hash(password: str | bytes) -> str:
    """The ``*HEX`` form of the stored hash (``SELECT PASSWORD('pw')``, mysql.user)."""
    return "*" + native_stage2(password).hex().upper()


def parse_native_hash(text: str) -> bytes:
    """The 20 bytes of a ``*HEX`` native password hash; ValueError-style ConfigError if not one."""
    if len(text) != 41 or not text.startswith("*"):
        raise ConfigError(
            f"not a mysql_native_password hash: expected '*' and 40 hex digits, got {text[:8]!r}..."
        )
    try:
        return bytes.fromhex(text[1:])
    except ValueError:
        raise ConfigError("mysql_native_password hash has non-hex characters") from None


def native_verify(response: bytes, nonce: bytes, stage2: bytes) -> bool:
    """Check a native response against the stored SHA1(SHA1(password))."""
    if len(response) != 20 or len(stage2) != 20:
        return False
    stage1 = _xor(response, _sha1(nonce[:NONCE_SIZE], stage2))
    return hmac.compare_digest(_sha1(stage1), stage2)


# -- caching_sha2_password ---------------------------------------------------------------


def sha2_scramble(password: str | bytes, nonce: bytes) -> bytes:
    """The client's caching_sha2_password fast-path response (empty for an empty password)."""
    pw = _pw(password)
    if not pw:
        return b""
    stage1 = _sha256(pw)
    return _xor(stage1, _sha256(_sha256(stage1), nonce[:NONCE_SIZE]))


def sha2_stage2(password: str | bytes) -> bytes:
    """SHA256(SHA256(password)): enough to check fast-path and full logins."""
    return _sha256(_sha256(_pw(password)))


def sha2_verify(response: bytes, nonce: bytes, stage2: bytes) -> bool:
    """Check a caching_sha2_password fast-path response against SHA256(SHA256(password))."""
    if len(response) != 32 or len(stage2) != 32:
        return False
    stage1 = _xor(response, _sha256(stage2, nonce[:NONCE_SIZE]))
    return hmac.compare_digest(_sha256(stage1), stage2)


def xor_password(password: str | bytes, nonce: bytes) -> bytes:
    """XOR(password + NUL, nonce repeated): the plaintext RSA encrypts in full auth."""
    pw = _pw(password) + b"\x00"
    key = nonce[:NONCE_SIZE] or b"\x00"
    return bytes(c ^ key[i % len(key)] for i, c in enumerate(pw))


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:  # pragma: no cover - the mysql extra installs it
        raise ConfigError(
            "caching_sha2_password over plain TCP needs RSA: install the 'cryptography' "
            "package (pip install 'fleetpool[mysql]'), or use TLS"
        ) from None
    return hashes, serialization, padding, rsa


def _oaep() -> Any:
    hashes, _, padding, _ = _crypto()
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None
    )


def rsa_encrypt_password(password: str | bytes, nonce: bytes, public_key_pem: bytes) -> bytes:
    """Full-auth answer without TLS: RSA-OAEP(XOR(password + NUL, nonce)) with the server's key."""
    _, serialization, _, _ = _crypto()
    try:
        key = serialization.load_pem_public_key(public_key_pem)
    except ValueError:
        raise RemoteProtocolError("the server's RSA public key is not valid PEM") from None
    encrypted: bytes = key.encrypt(xor_password(password, nonce), _oaep())
    return encrypted


def rsa_decrypt_password(ciphertext: bytes, nonce: bytes, private_key: RSAPrivateKey) -> bytes:
    """The plaintext password from an RSA full-auth answer; RemoteProtocolError if malformed."""
    try:
        plain = private_key.decrypt(ciphertext, _oaep())
    except ValueError:
        raise RemoteProtocolError("RSA-encrypted password could not be decrypted") from None
    key = nonce[:NONCE_SIZE] or b"\x00"
    clear = bytes(c ^ key[i % len(key)] for i, c in enumerate(plain))
    if not clear.endswith(b"\x00"):
        raise RemoteProtocolError("RSA-encrypted password is not NUL-terminated")
    return clear[:-1]


def generate_rsa_key(bits: int = 2048) -> RSAPrivateKey:
    """A fresh RSA key for a frontend that accepts full authentication without TLS."""
    _, _, _, rsa = _crypto()
    key: RSAPrivateKey = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key


def load_rsa_private_key(pem: bytes) -> RSAPrivateKey:
    _, serialization, _, rsa = _crypto()
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError as exc:
        raise ConfigError(f"not a PEM RSA private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("the private key for caching_sha2_password must be an RSA key")
    rsa_key: RSAPrivateKey = key
    return rsa_key


def public_key_pem(private_key: RSAPrivateKey) -> bytes:
    _, serialization, _, _ = _crypto()
    pem: bytes = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem


# -- mysql_clear_password ----------------------------------------------------------------


def clear_password(password: str | bytes) -> bytes:
    return _pw(password) + b"\x00"


def parse_clear_password(response: bytes) -> bytes:
    """The password from a mysql_clear_password response (the NUL is optional)."""
    return response[:-1] if response.endswith(b"\x00") else response


# -- client_ed25519 (MariaDB) ------------------------------------------------------------
# Edwards25519 arithmetic in extended coordinates (RFC 8032 section 5.1).

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_GY = 4 * pow(5, _P - 2, _P) % _P


def _recover_x(y: int, sign: int) -> int:
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if x & 1 != sign:
        x = _P - x
    return x


_G = (_recover_x(_GY, 0), _GY, 1, _recover_x(_GY, 0) * _GY % _P)
_Point = tuple[int, int, int, int]


def _add(p: _Point, q: _Point) -> _Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, p: _Point) -> _Point:
    q: _Point = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _encode_point(p: _Point) -> bytes:
    zinv = pow(p[2], _P - 2, _P)
    x, y = p[0] * zinv % _P, p[1] * zinv % _P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


def ed25519_public_key(password: str | bytes) -> bytes:
    """The 32-byte public key MariaDB stores for ``password`` (base64 in mysql.global_priv)."""
    h = hashlib.sha512(_pw(password)).digest()
    a = int.from_bytes(h[:32], "little")
    a = (a & ((1 << 254) - 8)) | (1 << 254)
    return _encode_point(_mul(a, _G))


def ed25519_sign(password: str | bytes, message: bytes) -> bytes:
    """MariaDB client_ed25519: sign ``message`` (the 32-byte nonce) with the password's key."""
    h = hashlib.sha512(_pw(password)).digest()
    a = int.from_bytes(h[:32], "little")
    a = (a & ((1 << 254) - 8)) | (1 << 254)
    public = _encode_point(_mul(a, _G))
    r = int.from_bytes(hashlib.sha512(h[32:] + message).digest(), "little") % _L
    big_r = _encode_point(_mul(r, _G))
    k = int.from_bytes(hashlib.sha512(big_r + public + message).digest(), "little") % _L
    s = (r + k * a) % _L
    return big_r + int.to_bytes(s, 32, "little")
