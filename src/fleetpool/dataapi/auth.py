# Strategy: a request is signed with SigV4 by an access key; the server only needs the
# key's secret. Configured keys map id -> secret. fleetpool signed tokens (the proxy's
# ``fp1`` tokens, minted by ``fleetpool token``) work as short-lived keys with no server
# state: the key id is the token without its signature (``fp1.<user>.<expiry>``) and the
# secret is the whole token, which the server recomputes from its token secret -- so the
# token itself never crosses the wire, as with AWS's temporary credentials.
from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from ..tokens import PREFIX, make_token, verify_token
from .protocol import api_error


class KeyRing:
    """Answers "what is the secret of this access key id at ``now``?"."""

    def __init__(self, access_keys: Mapping[str, str], token_secret: str = "") -> None:
        self.access_keys = dict(access_keys)
        self.token_secret = token_secret

    def secret_for(self, key_id: str, now: float) -> str | None:
        secret = self.access_keys.get(key_id)
        if secret is not None or not self.token_secret:
            return secret
        parts = key_id.split(".")
        if len(parts) != 3 or parts[0] != PREFIX or not parts[2].isdigit():
            return None
        try:
            user = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)).decode()
        except (binascii.Error, ValueError):
            return None
        token = make_token(self.token_secret, user, float(parts[2]), ttl=0)
        if not token.startswith(key_id + "."):
            return None  # the user part did not round-trip: not one of ours
        if not verify_token(self.token_secret, token, user, now):
            raise api_error(
                "ExpiredTokenException", "The security token included in the request is expired"
            )
        return token
