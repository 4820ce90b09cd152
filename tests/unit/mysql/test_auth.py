"""MySQL authentication formulas, checked against known values and PyMySQL's client side."""

from __future__ import annotations

import pymysql._auth as pymysql_auth
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fleetpool.errors import ConfigError, RemoteProtocolError
from fleetpool.mysql import auth

NONCE = b"0123456789abcdefghij"


def test_native_hash_known_value() -> None:
    # SELECT PASSWORD('password') on MySQL 5.7 / MariaDB.
    assert auth.native_hash("password") == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
    assert auth.parse_native_hash(auth.native_hash("x")) == auth.native_stage2("x")
    for bad in ("2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19", "*ZZ" + "0" * 38):
        with pytest.raises(ConfigError):
            auth.parse_native_hash(bad)


@pytest.mark.parametrize("password", ["pw", "päss wörd", "x" * 100])
def test_scrambles_match_pymysql(password: str) -> None:
    raw = password.encode()
    assert auth.native_scramble(password, NONCE) == pymysql_auth.scramble_native_password(
        raw, NONCE
    )
    assert auth.sha2_scramble(password, NONCE) == pymysql_auth.scramble_caching_sha2(raw, NONCE)
    assert auth.xor_password(password, NONCE) == pymysql_auth._xor_password(raw + b"\0", NONCE)


def test_verification_from_stored_hashes() -> None:
    native = auth.native_scramble("pw", NONCE)
    assert auth.native_verify(native, NONCE, auth.native_stage2("pw"))
    assert not auth.native_verify(native, NONCE, auth.native_stage2("other"))
    assert not auth.native_verify(native[:-1], NONCE, auth.native_stage2("pw"))
    sha2 = auth.sha2_scramble("pw", NONCE)
    assert auth.sha2_verify(sha2, NONCE, auth.sha2_stage2("pw"))
    assert not auth.sha2_verify(sha2, NONCE[::-1], auth.sha2_stage2("pw"))
    assert auth.native_scramble("", NONCE) == b"" == auth.sha2_scramble("", NONCE)


def test_rsa_full_authentication_round_trip() -> None:
    key = auth.generate_rsa_key()
    pem = auth.public_key_pem(key)
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    # PyMySQL encrypts as a real client would; fleetpool decrypts.
    ciphertext = pymysql_auth.sha2_rsa_encrypt(b"s3cret", NONCE, pem)
    assert auth.rsa_decrypt_password(ciphertext, NONCE, key) == b"s3cret"
    assert auth.rsa_decrypt_password(auth.rsa_encrypt_password("s3cret", NONCE, pem), NONCE, key)
    with pytest.raises(RemoteProtocolError):
        auth.rsa_decrypt_password(b"garbage", NONCE, key)
    with pytest.raises(RemoteProtocolError):
        auth.rsa_encrypt_password("x", NONCE, b"not a key")
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    loaded = auth.load_rsa_private_key(private_pem)
    assert auth.public_key_pem(loaded) == pem
    with pytest.raises(ConfigError):
        auth.load_rsa_private_key(b"nope")


def test_clear_password() -> None:
    assert auth.clear_password("tok") == b"tok\x00"
    assert auth.parse_clear_password(b"tok\x00") == b"tok" == auth.parse_clear_password(b"tok")


@pytest.mark.parametrize("password", ["secret", "", "a much longer password than 32 bytes!!"])
def test_ed25519_signature_verifies(password: str) -> None:
    nonce = bytes(range(32))
    signature = auth.ed25519_sign(password, nonce)
    assert len(signature) == 64
    Ed25519PublicKey.from_public_bytes(auth.ed25519_public_key(password)).verify(signature, nonce)


def test_nonce_alphabet() -> None:
    for _ in range(20):
        nonce = auth.make_nonce()
        assert len(nonce) == 20 and b"\x00" not in nonce and b"$" not in nonce
