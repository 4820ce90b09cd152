# Strategy: AWS Signature Version 4, the published algorithm, in pure functions that
# take ``now``. The server verifies with it and the small client signs with it, so both
# ends share one copy; the tests check it against botocore's own signer, which is the
# reference. We do not call botocore on the server: it would make boto3 a dependency of
# the endpoint, and its signer is built around request objects that cost more than the
# two HMACs and two SHA-256s a verification needs. Signing keys depend only on
# (secret, date, region, service), so they are cached.
#
# Only header-based signatures (``Authorization: AWS4-HMAC-SHA256 ...``) are accepted;
# presigned query strings are not (the SDKs never use them for this API).
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from ..errors import DataApiError
from .protocol import api_error

ALGORITHM = "AWS4-HMAC-SHA256"
DEFAULT_SKEW = 300.0  # seconds; AWS allows 5 minutes between signer and service
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<sig>[0-9a-f]{64})\s*$"
)


@dataclass(frozen=True, slots=True)
class Authorization:
    """The parts of an ``Authorization`` header."""

    key_id: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse_authorization(value: str) -> Authorization:
    match = _AUTH.match(value.strip())
    if match is None:
        raise api_error(
            "IncompleteSignatureException",
            "Authorization header is malformed: expected 'AWS4-HMAC-SHA256 Credential=KEY/"
            "DATE/REGION/SERVICE/aws4_request, SignedHeaders=h1;h2, Signature=HEX'",
        )
    parts = match.group("cred").split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        raise api_error(
            "IncompleteSignatureException",
            "Credential must be KEY/YYYYMMDD/REGION/SERVICE/aws4_request",
        )
    signed = tuple(match.group("signed").split(";"))
    return Authorization(parts[0], parts[1], parts[2], parts[3], signed, match.group("sig"))


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: tuple[str, ...],
    payload_hash: str,
) -> str:
    """The canonical request; ``path`` is as sent (already percent-encoded) and is
    encoded once more, as every service but S3 does; ``headers`` have lower-case names."""
    if query:
        pairs = sorted(
            (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
            for k, v in parse_qsl(query, keep_blank_values=True)
        )
        canonical_query = "&".join(f"{k}={v}" for k, v in pairs)
    else:
        canonical_query = ""
    # Trim each value and collapse runs of whitespace (" ".join(split()) does both in C).
    canonical_headers = "".join(
        f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed_headers
    )
    canonical_path = _paths.get(path)
    if canonical_path is None:
        canonical_path = quote(path or "/", safe="/~")
        if len(_paths) < 256:
            _paths[path] = canonical_path
    return "\n".join(
        (
            method,
            canonical_path,
            canonical_query,
            canonical_headers,
            ";".join(signed_headers),
            payload_hash,
        )
    )


_paths: dict[str, str] = {}
_key_cache: dict[tuple[str, str, str, str], bytes] = {}


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    cache_key = (secret, date, region, service)
    key = _key_cache.get(cache_key)
    if key is None:
        key = ("AWS4" + secret).encode()
        for part in (date, region, service, "aws4_request"):
            key = hmac.digest(key, part.encode(), "sha256")
        if len(_key_cache) >= 1024:
            _key_cache.clear()  # keys change daily; stay bounded
        _key_cache[cache_key] = key
    return key


def signature(key: bytes, amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"
    return hmac.digest(key, to_sign.encode(), "sha256").hex()


def amz_date(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime(_AMZ_DATE)


def sign(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    key_id: str,
    secret: str,
    region: str,
    now: float,
    service: str = "rds-data",
) -> dict[str, str]:
    """The headers to add to a request (``X-Amz-Date``, ``Authorization``).

    ``headers`` are those the request will carry (``Host`` included); all are signed."""
    stamp = amz_date(now)
    lower = {k.lower(): v for k, v in headers.items()}
    lower["x-amz-date"] = stamp
    signed = tuple(sorted(lower))
    path, _, query = path.partition("?")
    canonical = canonical_request(
        method, path, query, lower, signed, hashlib.sha256(body).hexdigest()
    )
    auth = Authorization(key_id, stamp[:8], region, service, signed, "")
    sig = signature(signing_key(secret, auth.date, region, service), stamp, auth.scope, canonical)
    return {
        "X-Amz-Date": stamp,
        "Authorization": f"{ALGORITHM} Credential={key_id}/{auth.scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={sig}",
    }


_stamps: dict[str, float] = {}


def _parse_stamp(stamp: str) -> float:
    # Clients sign many requests per second with the same stamp: parse each once.
    signed_at = _stamps.get(stamp)
    if signed_at is None:
        try:
            parsed = dt.datetime.strptime(stamp, _AMZ_DATE).replace(tzinfo=dt.UTC)
        except ValueError:
            raise api_error(
                "IncompleteSignatureException", "X-Amz-Date must be an ISO 8601 basic time (Z)"
            ) from None
        signed_at = parsed.timestamp()
        if len(_stamps) >= 4096:
            _stamps.clear()
        _stamps[stamp] = signed_at
    return signed_at


def verify(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    secret_for: Callable[[str, float], str | None],
    now: float,
    *,
    skew: float = DEFAULT_SKEW,
    service: str = "rds-data",
) -> str:
    """Check a request's signature; return the access key id that signed it.

    ``headers`` have lower-case names; ``secret_for(key_id, now)`` returns the secret
    of a known key (None for an unknown one). Raises :class:`DataApiError` with AWS's
    error names: missing, malformed, unknown key, bad signature, expired date."""
    value = headers.get("authorization")
    if not value:
        raise api_error("MissingAuthenticationTokenException", "Missing Authentication Token")
    auth = parse_authorization(value)
    if auth.service != service:
        raise api_error(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: {service!r}",
        )
    for required in ("host", "x-amz-date"):
        if required not in auth.signed_headers:
            raise api_error(
                "IncompleteSignatureException", f"SignedHeaders must include {required!r}"
            )
    stamp = headers.get("x-amz-date", "")
    signed_at = _parse_stamp(stamp)
    if abs(now - signed_at) > skew:
        edge = "earlier" if signed_at < now else "later"
        raise api_error(
            "InvalidSignatureException",
            f"Signature expired: {stamp} is now {edge} than {amz_date(now - skew)} "
            f"({amz_date(now)} - {skew / 60:g} min.)"
            if edge == "earlier"
            else f"Signature not yet current: {stamp} is still later than "
            f"{amz_date(now + skew)} ({amz_date(now)} + {skew / 60:g} min.)",
        )
    if auth.date != stamp[:8]:
        raise api_error("InvalidSignatureException", "Credential date does not match X-Amz-Date")
    secret = secret_for(auth.key_id, now)
    if secret is None:
        raise api_error(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    path, _, query = target.partition("?")
    canonical = canonical_request(
        method, path, query, headers, auth.signed_headers, hashlib.sha256(body).hexdigest()
    )
    key = signing_key(secret, auth.date, auth.region, auth.service)
    if not hmac.compare_digest(signature(key, stamp, auth.scope, canonical), auth.signature):
        raise api_error(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    return auth.key_id


__all__ = [
    "DEFAULT_SKEW",
    "Authorization",
    "DataApiError",
    "amz_date",
    "canonical_request",
    "parse_authorization",
    "sign",
    "signature",
    "signing_key",
    "verify",
]
