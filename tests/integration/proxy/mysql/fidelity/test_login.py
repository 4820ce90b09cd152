"""Logins the server itself accepts must work through the proxy the same way."""

from __future__ import annotations

from collections.abc import Callable

import pymysql
import pytest

from ..conftest import MySQLProxy

pytestmark = pytest.mark.integration


def test_empty_password(mysql_proxy_factory: Callable[..., MySQLProxy]) -> None:
    proxy = mysql_proxy_factory(users={"blank": ""})
    conn = pymysql.connect(
        **proxy.kwargs(user="blank", password="", connect_timeout=10, read_timeout=10)
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()
