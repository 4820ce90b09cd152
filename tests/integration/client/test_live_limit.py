"""A live limit: the budget follows the database's own max_connections.

``budget_limit="auto:50%"`` sets the limit from what the server reports after
a connect; an ``ALTER SYSTEM SET max_connections`` and a restart move it at the
next connect, with no redeploy, and the function limits keep their shares.
"""

from __future__ import annotations

import time
from typing import Any

import fleetpool
from tests.integration.client.helpers import one


def _usable(server: Any) -> int:
    """max_connections minus the reserved slots, as the server reports them."""
    rows = server.execute(
        "SELECT current_setting('max_connections')::int"
        " - current_setting('superuser_reserved_connections')::int"
        " - coalesce(current_setting('reserved_connections', true)::int, 0)"
    )
    return int(rows[0][0])


def _connect_once(dsn: str, redis_url: str, name: str, **kwargs: Any) -> fleetpool.Database:
    """A Database with a live limit that has connected once (its first look at the server)."""
    db = fleetpool.Database(
        dsn, budget=redis_url, budget_name=name, handle_signals=False, reap_threshold=None, **kwargs
    )
    with db.connection() as conn:
        assert one(conn, "SELECT 1") == 1
    return db


def test_the_budget_limit_follows_max_connections(
    pg_server_factory: Any, redis_url: str, unique_name: str
) -> None:
    # max_connections from the configuration files, where ALTER SYSTEM writes.
    server = pg_server_factory(max_connections=None)
    server.execute("ALTER SYSTEM SET max_connections = 20")
    server.restart()
    budget = fleetpool.open_budget(redis_url, unique_name)
    budget.configure(limit=8, functions={"api": (2, 6)})
    db = _connect_once(
        server.dsn,
        redis_url,
        unique_name,
        function="api",
        budget_limit="auto:50%",
        limit_interval=0.2,
    )
    try:
        usable = _usable(server)
        first = budget.config()
        assert first.limit == usable // 2  # no session but the fleet's
        assert first.functions["api"].min == 2 * first.limit // 8
        assert first.functions["api"].max == 6 * first.limit // 8

        server.execute("ALTER SYSTEM SET max_connections = 60")
        server.restart()
        time.sleep(0.3)  # past limit_interval: the next connect looks again
        with db.connection() as conn:  # the warm session died with the restart
            assert one(conn, "SELECT 1") == 1
        usable_after = _usable(server)
        second = budget.config()
        print(f"\nlive limit: {first.limit} at max_connections=20, {second.limit} at 60")
        assert usable_after > usable
        assert second.limit == usable_after // 2
        # Shares of the configured base, not of the previous resize.
        assert second.functions["api"].min == 2 * second.limit // 8
        assert second.functions["api"].max == 6 * second.limit // 8
        assert db.stats.limit_changes == 2
    finally:
        db.close()
        budget.close()


def test_other_sessions_are_left_their_connections(
    pg_server_factory: Any, redis_url: str, unique_name: str
) -> None:
    server = pg_server_factory(max_connections=20)
    others = [server.connect() for _ in range(4)]
    db = _connect_once(server.dsn, redis_url, unique_name, budget_limit="auto")
    try:
        usable = _usable(server)
        # The other sessions (and none of the fleet's) come off before the headroom.
        assert fleetpool.open_budget(redis_url, unique_name).config().limit == int(
            (usable - 4) * 0.9
        )
    finally:
        db.close()
        for conn in others:
            conn.close()


def test_a_bad_live_limit_is_refused_clearly() -> None:
    import pytest

    for bad in ("auto:0%", "auto:120%", "half", 10):
        with pytest.raises(fleetpool.ConfigError, match="auto"):
            fleetpool.Database(
                "postgresql://u@127.0.0.1/db",
                budget="memory://",
                budget_limit=bad,  # type: ignore[arg-type]
            )
