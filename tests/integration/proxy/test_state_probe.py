"""The opt-in state probe: state a function body created is found, and pins."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from .conftest import ProxyHandle

pytestmark = pytest.mark.integration

FUNCTION = """
CREATE OR REPLACE FUNCTION fp_hidden_temp() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  CREATE TEMP TABLE IF NOT EXISTS fp_hidden (a int);
  RETURN 1;
END $$
"""


@pytest.mark.parametrize("probe", [False, True])
def test_state_made_inside_a_function(proxy_factory: Any, direct: Any, probe: bool) -> None:
    direct.execute(FUNCTION)
    handle: ProxyHandle = proxy_factory(pool_size=1, state_probe=probe)
    with psycopg.connect(handle.dsn(), autocommit=True) as a:
        a.execute("SELECT fp_hidden_temp()")  # the text shows nothing
        a.execute("SELECT 1")
        pinned = handle.call(lambda: [c.pin_reason for c in handle.proxy.clients])
        if probe:
            assert pinned == ["temporary object (found by state_probe)"]
        else:
            assert pinned == [""]  # documented: invisible without the probe
            with psycopg.connect(handle.dsn(), autocommit=True) as b:
                leak = b.execute("SELECT to_regclass('pg_temp.fp_hidden') IS NOT NULL")
                assert leak.fetchone() == (True,)  # the leak state_probe exists for
    if probe:
        with psycopg.connect(handle.dsn(), autocommit=True) as b:
            seen = b.execute("SELECT to_regclass('pg_temp.fp_hidden') IS NOT NULL").fetchone()
            assert seen == (False,)
