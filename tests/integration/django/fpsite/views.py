"""Views that show what a request sees of its database session."""

from __future__ import annotations

import json

from django.db import connection
from django.http import HttpRequest, HttpResponse
from fpsite.models import Item

POSTGRES = connection.vendor == "postgresql"


def _one(sql: str) -> object:
    with connection.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def session(request: HttpRequest) -> HttpResponse:
    """The session's id and the state a dirty request would have changed."""
    fleet = connection.fleet
    state = {
        "session": _one("SELECT pg_backend_pid()" if POSTGRES else "SELECT CONNECTION_ID()"),
        "marker": _one("SHOW search_path" if POSTGRES else "SELECT @fp_marker"),
        "isolation": _one(
            "SHOW transaction_isolation" if POSTGRES else "SELECT @@session.tx_isolation"
        ),
        "timezone": _one("SHOW TimeZone" if POSTGRES else "SELECT @@session.time_zone"),
        "items": Item.objects.count(),
        "lease": fleet.lease.id if fleet is not None and fleet.lease is not None else None,
        "tag": fleet.tag if fleet is not None else None,
    }
    return HttpResponse(json.dumps(state, default=str), content_type="application/json")


def dirty(request: HttpRequest) -> HttpResponse:
    """Leave session state behind (outside the request's transaction)."""
    with connection.cursor() as cur:
        cur.execute("SET search_path = nowhere" if POSTGRES else "SET @fp_marker = 42")
        cur.execute(
            "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE"
            if not POSTGRES
            else "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE"
        )
    return HttpResponse("dirty")


def create_then_fail(request: HttpRequest) -> HttpResponse:
    """ATOMIC_REQUESTS: the row must not survive the error."""
    Item.objects.create(name="never")
    raise RuntimeError("fail after the insert")
