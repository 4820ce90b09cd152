"""The redis-py internals the Redis budget's fast path relies on, checked on a real server.

If this fails after a redis-py upgrade, budget/redis/_wire.py must be adapted
(and the version range of the ``redis`` extra in pyproject.toml widened) before
anything else: the budget would otherwise fail at its first call in production.
"""

from __future__ import annotations

import inspect

import pytest

redis_py = pytest.importorskip("redis")

from fleetpool.budget.redis import _wire  # noqa: E402

pytestmark = pytest.mark.integration


def test_the_internals_exist_with_the_shapes_used() -> None:
    # Instances, built without I/O: some of the attributes are set in __init__.
    pool = redis_py.ConnectionPool.from_url("redis://127.0.0.1:1/0", socket_timeout=1.0)
    instances = {"ConnectionPool": pool, "Connection": redis_py.Connection()}
    missing = [
        f"{cls}.{attr}"
        for cls, attrs in _wire.REDIS_PY_INTERNALS.items()
        for attr in attrs
        if not hasattr(instances[cls], attr)
    ]
    assert not missing, f"redis-py {redis_py.__version__} lacks {missing}"
    assert isinstance(pool.connection_kwargs, dict), "ConnectionPool.connection_kwargs changed"
    assert isinstance(pool.connection_class, type), "ConnectionPool.connection_class changed"
    params = inspect.signature(redis_py.Connection.send_packed_command).parameters
    assert "command" in params, "Connection.send_packed_command(command, ...) changed"


def test_a_private_connection_round_trips_packed_commands(redis_url: str) -> None:
    pool = redis_py.ConnectionPool.from_url(redis_url, socket_timeout=2.0)
    conn = _wire.connect(pool)
    try:
        assert _wire.round_trip(conn, _wire.pack_args(("PING",), total=1)) in (
            b"PONG",
            "PONG",
            True,
        )
        key = "fleetpool-test:internals"
        assert _wire.round_trip(conn, _wire.pack_args(("SET", key, "v"), total=3)) in (
            b"OK",
            "OK",
            True,
        )
        assert _wire.round_trip(conn, _wire.pack_args(("GET", key), total=2)) == b"v"
        conn.send_command("DEL", key)
        assert conn.read_response() == 1
    finally:
        conn.disconnect()
