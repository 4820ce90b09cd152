"""SigV4: our signer and verifier against botocore's own signer (the reference)."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

botocore = pytest.importorskip("botocore")
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

from fleetpool.dataapi import sigv4  # noqa: E402
from fleetpool.errors import DataApiError  # noqa: E402

BODY = json.dumps({"sql": "SELECT 1", "resourceArn": "a"}).encode()
KEYS = {"AKID": "SECRET"}


def secret_for(key_id: str, now: float) -> str | None:
    return KEYS.get(key_id)


def botocore_signed(path: str = "/Execute", body: bytes = BODY) -> dict[str, str]:
    req = AWSRequest(
        "POST",
        f"http://127.0.0.1:8080{path}",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials("AKID", "SECRET"), "rds-data", "eu-west-1").add_auth(req)
    headers = {k.lower(): v for k, v in req.headers.items()}
    headers["host"] = "127.0.0.1:8080"
    return headers


def test_botocore_signatures_verify() -> None:
    assert (
        sigv4.verify("POST", "/Execute", botocore_signed(), BODY, secret_for, time.time()) == "AKID"
    )


def test_our_signature_equals_botocores() -> None:
    headers = botocore_signed()
    stamp = headers["x-amz-date"]
    now = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC).timestamp()
    ours = sigv4.sign(
        "POST",
        "/Execute",
        {"Content-Type": "application/json", "Host": "127.0.0.1:8080"},
        BODY,
        key_id="AKID",
        secret="SECRET",
        region="eu-west-1",
        now=now,
    )
    assert ours["Authorization"] == headers["authorization"]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda h: h.pop("authorization"), "MissingAuthenticationTokenException"),
        (
            lambda h: h.update(authorization="AWS4-HMAC-SHA256 nonsense"),
            "IncompleteSignatureException",
        ),
        (
            lambda h: h.update(authorization=h["authorization"].replace("AKID", "NOPE")),
            "UnrecognizedClientException",
        ),
        (
            lambda h: h.update(authorization=h["authorization"].replace("rds-data", "s3")),
            "InvalidSignatureException",
        ),
        (lambda h: h.update(host="evil.example:8080"), "InvalidSignatureException"),
        (lambda h: h.update({"x-amz-date": "yesterday"}), "IncompleteSignatureException"),
    ],
)
def test_refusals_name_the_problem(change, code) -> None:  # type: ignore[no-untyped-def]
    headers = botocore_signed()
    change(headers)
    with pytest.raises(DataApiError) as err:
        sigv4.verify("POST", "/Execute", headers, BODY, secret_for, time.time())
    assert err.value.code == code
    assert err.value.status in (400, 403)


def test_clock_skew_window() -> None:
    headers = botocore_signed()
    now = time.time()
    assert sigv4.verify("POST", "/Execute", headers, BODY, secret_for, now + 299)
    with pytest.raises(DataApiError, match="Signature expired"):
        sigv4.verify("POST", "/Execute", headers, BODY, secret_for, now + 301)
    with pytest.raises(DataApiError, match="not yet current"):
        sigv4.verify("POST", "/Execute", headers, BODY, secret_for, now - 301)
    assert sigv4.verify("POST", "/Execute", headers, BODY, secret_for, now + 500, skew=600)


def test_body_and_path_are_covered() -> None:
    headers = botocore_signed()
    with pytest.raises(DataApiError):
        sigv4.verify("POST", "/Execute", headers, BODY + b" ", secret_for, time.time())
    with pytest.raises(DataApiError):
        sigv4.verify("POST", "/BatchExecute", headers, BODY, secret_for, time.time())
