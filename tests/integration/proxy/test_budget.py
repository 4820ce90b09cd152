"""Server connections are budget leases shared with the rest of the fleet."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fleetpool.budget import open_budget

from .conftest import ProxyHandle

pytestmark = pytest.mark.integration


def test_server_connections_hold_leases(proxy_factory: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    budget = open_budget(url, "orders-db")
    budget.configure(limit=2)
    direct = budget.acquire(function="someone-else", ttl=60)  # the fleet uses one already
    handle: ProxyHandle = proxy_factory(
        pool_size=4, budget_url=url, budget_name="orders-db", connection_borrow_timeout=1.5
    )
    conns = [psycopg.connect(handle.dsn()) for _ in range(2)]
    try:
        conns[0].execute("select 1")  # takes the one lease left
        leases = [lease for lease in budget.leases() if lease.function == "proxy"]
        assert len(leases) == 1
        with pytest.raises(psycopg.errors.OperationalError, match="no connections left"):
            conns[1].execute("select 1")  # pool has room, the budget has not
        conns[1].rollback()
        conns[0].commit()
        budget.release(direct)
        done = threading.Event()
        conns[0].execute("select 1")

        def other() -> None:
            conns[1].execute("select 2")
            done.set()

        t = threading.Thread(target=other)
        t.start()
        assert done.wait(10)  # the freed capacity became a second server connection
        t.join(10)
        assert len([x for x in budget.leases() if x.function == "proxy"]) == 2
    finally:
        for conn in conns:
            conn.close()
    handle.stop()
    deadline = time.monotonic() + 5
    while [x for x in budget.leases() if x.function == "proxy"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [x for x in budget.leases() if x.function == "proxy"] == []
    budget.close()
