"""Credentials evaluated at connect time (Secrets Manager rotation against moto), and
SQLAlchemy engines whose connections are fleetpool-managed."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from sqlalchemy import Integer, String, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import fleetpool
from fleetpool.client.credentials import Credentials
from fleetpool.client.dsn import parse_dsn
from tests.integration.client.helpers import admin, one


def test_secret_rotation_refreshes_once_on_auth_failure(
    pg_server_factory: Any,
    moto_endpoint: str,
    make_db: Any,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    server = pg_server_factory(max_connections=10, auth="scram-sha-256", password="old-pw")
    sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto_endpoint)
    sm.create_secret(
        Name=unique_name, SecretString=json.dumps({"username": "postgres", "password": "old-pw"})
    )
    dsn = server.dsn.replace(":old-pw@", "@")
    db = make_db(dsn, secret=unique_name, region="us-east-1")
    with db.connection() as conn:
        assert one(conn, "SELECT 1") == 1
    # Rotation: new password in the database and in the secret; the session ends.
    server.execute("ALTER ROLE postgres PASSWORD 'new-pw'")
    sm.put_secret_value(
        SecretId=unique_name,
        SecretString=json.dumps({"username": "postgres", "password": "new-pw"}),
    )
    admin(
        server.dsn.replace("old-pw", "new-pw"), "SELECT pg_terminate_backend(%s)", (db.session_id,)
    )
    import time

    time.sleep(0.2)
    with db.connection() as conn:
        assert one(conn, "SELECT 2") == 2
    assert db.stats.connects == 2


def test_wrong_static_password_fails_fast(pg_server_factory: Any, make_db: Any) -> None:
    server = pg_server_factory(max_connections=10, auth="scram-sha-256", password="right")
    db = make_db(server.dsn.replace(":right@", ":wrong@"), connect_timeout=5)
    with pytest.raises(fleetpool.DatabaseUnavailable, match="refused the login"), db.connection():
        pass
    assert db.stats.connect_retries == 0  # no backoff: one immediate second try only


def test_password_callable_and_iam_token(moto_endpoint: str) -> None:
    calls = []
    creds = Credentials(
        parse_dsn("postgresql://app@db.example:5432/x"), password=lambda: calls.append(1) or "pw"
    )
    assert creds.resolve().password == "pw" and creds.resolve().password == "pw"
    assert len(calls) == 2 and creds.refreshable
    iam = Credentials(parse_dsn("mysql://app@db.example:3306/x"), iam_auth=True, region="eu-west-1")
    login = iam.resolve()
    assert login.require_tls and login.user == "app"
    assert login.password is not None and "Action=connect" in login.password
    assert "DBUser=app" in login.password


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "fp_sa_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


def test_sqlalchemy_engine_is_fleetpool_managed(dsn: str, unique_name: str) -> None:
    from fleetpool.sqlalchemy import create_engine

    budget = fleetpool.open_budget("memory://", unique_name)
    budget.configure(limit=2)
    engine = create_engine(dsn, budget=budget, handle_signals=False)
    db = engine.pool.database  # type: ignore[attr-defined]
    try:
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(Item(name="kept"))
            session.commit()
            session.add(Item(name="dropped"))
            session.flush()
            session.rollback()
            assert session.scalars(select(Item.name)).all() == ["kept"]
        mysql = dsn.startswith("mysql")
        with engine.connect() as conn:
            conn.execute(text("SET @fp_x = 1" if mysql else "SET search_path = nowhere"))
            conn.commit()
        with engine.connect() as conn:
            shown = conn.execute(text("SELECT @fp_x" if mysql else "SHOW search_path")).scalar()
            assert shown == (None if mysql else '"$user", public')
        assert db.stats.connects == 1 and db.stats.resets == 1
        assert len(budget.leases()) == 1
        Base.metadata.drop_all(engine)
    finally:
        engine.dispose()
    assert budget.leases() == []
