# Strategy: short-lived login tokens, the proxy's analogue of RDS IAM auth tokens.
# A token is ``fp1.<user>.<expiry unix seconds>.<signature>`` where the signature is
# HMAC-SHA256 over ``user.expiry`` with a secret shared by whoever mints tokens and
# the proxy. The client sends it as its password (cleartext auth, so use TLS); the
# proxy checks the signature, the user and the expiry. Pure functions, time passed in.
# Secrets rotate without a gap: the verifier accepts the new and the previous secret
# while tokens minted with the old one are still in use.
from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from .errors import ConfigError

PREFIX = "fp1"
DEFAULT_TTL = 900.0


def _sign(secret: str, user_b64: str, expiry: int) -> str:
    mac = hmac.new(secret.encode(), f"{user_b64}.{expiry}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def make_token(secret: str, user: str, now: float, ttl: float = DEFAULT_TTL) -> str:
    """A token for ``user`` valid until ``now + ttl`` (seconds since the epoch)."""
    if not secret:
        raise ConfigError(
            "the token secret must not be empty (--secret, or FLEETPOOL_TOKEN_SECRET[_FILE])"
        )
    user_b64 = base64.urlsafe_b64encode(user.encode()).decode().rstrip("=")
    expiry = int(now + ttl)
    return f"{PREFIX}.{user_b64}.{expiry}.{_sign(secret, user_b64, expiry)}"


def verify_token(secret: str | Sequence[str], token: str, user: str, now: float) -> bool:
    """True when ``token`` was signed with ``secret`` for ``user`` and has not expired.

    ``secret`` may be several (a rotation: the new secret and the one it replaces):
    a token signed with any of them is accepted.
    """
    secrets = (secret,) if isinstance(secret, str) else tuple(secret)
    secrets = tuple(s for s in secrets if s)
    if not secrets:
        return False
    parts = token.split(".")
    expiry = parts[2] if len(parts) == 4 else ""
    if parts[0] != PREFIX or not (expiry.isascii() and expiry.isdigit()) or len(expiry) > 12:
        return False
    _, user_b64, expiry_s, sig = parts
    if not (sig.isascii() and user_b64.isascii()):  # compare_digest refuses non-ASCII str
        return False
    signed = [hmac.compare_digest(sig, _sign(s, user_b64, int(expiry_s))) for s in secrets]
    if not any(signed):
        return False
    try:
        padded = user_b64 + "=" * (-len(user_b64) % 4)
        token_user = base64.urlsafe_b64decode(padded).decode()
    except (ValueError, UnicodeDecodeError):
        return False
    return token_user == user and now < int(expiry_s)
