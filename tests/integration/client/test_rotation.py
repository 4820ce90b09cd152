"""A login during a Secrets Manager rotation never fails.

A rotation (createSecret, setSecret, testSecret, finishSecret) sets the
database's password to the ``AWSPENDING`` version before that version becomes
``AWSCURRENT``. Containers that keep connecting all through it (moto's server
mode stands in for Secrets Manager; the database is a real PostgreSQL with
SCRAM) must see no error: a refused login tries the pending version, then the
current one read again.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import boto3
import pytest

import fleetpool
from tests.integration.client.helpers import one


def _secret(password: str) -> str:
    return json.dumps({"username": "postgres", "password": password})


def test_logins_through_a_rotation_never_fail(
    pg_server_factory: Any,
    moto_endpoint: str,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    server = pg_server_factory(max_connections=20, auth="scram-sha-256", password="old-pw")
    sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto_endpoint)
    sm.create_secret(Name=unique_name, SecretString=_secret("old-pw"))
    dsn = server.dsn.replace(":old-pw@", "@")
    stop = threading.Event()
    errors: list[BaseException] = []
    counts: list[int] = []

    def container() -> None:
        db = fleetpool.Database(
            dsn,
            secret=unique_name,
            region="us-east-1",
            mode="per_invocation",  # a login per invocation: the worst case
            handle_signals=False,
            reap_threshold=None,
        )
        n = 0
        try:
            while not stop.is_set() and n < 2000:
                with db.connection() as conn:
                    assert one(conn, "SELECT 1") == 1
                n += 1
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            counts.append(n)
            db.close()

    threads = [threading.Thread(target=container) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        # createSecret: a new version, pending.
        new = sm.put_secret_value(
            SecretId=unique_name, SecretString=_secret("new-pw"), VersionStages=["AWSPENDING"]
        )["VersionId"]
        time.sleep(0.3)
        # setSecret: the database takes the pending password; current is now wrong.
        server.execute("ALTER ROLE postgres PASSWORD 'new-pw'")
        time.sleep(0.8)
        # finishSecret: pending becomes current.
        old = next(
            v["VersionId"]
            for v in sm.list_secret_version_ids(SecretId=unique_name)["Versions"]
            if "AWSCURRENT" in v["VersionStages"]
        )
        sm.update_secret_version_stage(
            SecretId=unique_name,
            VersionStage="AWSCURRENT",
            MoveToVersionId=new,
            RemoveFromVersionId=old,
        )
        sm.update_secret_version_stage(
            SecretId=unique_name, VersionStage="AWSPENDING", RemoveFromVersionId=new
        )
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    print(f"\nrotation: {sum(counts)} logins through a rotation, {len(errors)} failed")
    assert errors == []
    assert min(counts) > 0


def test_a_finished_rotation_is_read_again(
    pg_server_factory: Any,
    moto_endpoint: str,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No pending version (the rotation finished while the container slept): the
    current version read again works."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    server = pg_server_factory(max_connections=10, auth="scram-sha-256", password="old-pw")
    sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto_endpoint)
    sm.create_secret(Name=unique_name, SecretString=_secret("old-pw"))
    db = fleetpool.Database(
        server.dsn.replace(":old-pw@", "@"),
        secret=unique_name,
        region="us-east-1",
        mode="per_invocation",
        handle_signals=False,
        reap_threshold=None,
    )
    try:
        with db.connection() as conn:
            assert one(conn, "SELECT 1") == 1
        server.execute("ALTER ROLE postgres PASSWORD 'new-pw'")
        sm.put_secret_value(SecretId=unique_name, SecretString=_secret("new-pw"))
        with db.connection() as conn:
            assert one(conn, "SELECT 2") == 2
    finally:
        db.close()
