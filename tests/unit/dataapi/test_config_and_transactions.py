"""Which transactions are over: a pure function of the table and ``now``."""

from __future__ import annotations

from typing import Any

import pytest

from fleetpool.dataapi.config import DataApiConfig, DatabaseTarget, from_mapping
from fleetpool.dataapi.transactions import Transaction, TransactionTable, expired
from fleetpool.errors import ConfigError


def tx(tx_id: str, started: float, last_used: float, busy: int = 0) -> Transaction:
    fake: Any = object()
    return Transaction(tx_id, "key", 0, fake, fake, started, last_used, busy)


def test_idle_and_lifetime_limits() -> None:
    table = {
        "fresh": tx("fresh", 0, 95),
        "idle": tx("idle", 0, 10),
        "busy-idle": tx("busy-idle", 0, 10, busy=1),
        "old": tx("old", -1000, 99),
    }
    out = dict(expired(table, now=100, idle_timeout=30, max_lifetime=500))
    assert set(out) == {"idle", "old"}
    assert "30 s without a statement" in out["idle"]
    assert "maximum lifetime" in out["old"]


def test_ended_ids_keep_their_reason() -> None:
    table = TransactionTable()
    table.add(tx("a", 0, 0))
    table.end("a", "was already committed")
    assert "already committed" in table.not_found("a").message
    assert "is not found" in table.not_found("b").message
    with pytest.raises(Exception, match="is not found"):
        table.get("b", "key")


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="access key"):
        DataApiConfig(databases=[DatabaseTarget("postgresql://u@h/db")])
    with pytest.raises(ConfigError, match="resource_arn"):
        DataApiConfig(
            databases=[DatabaseTarget("postgresql://u@h/a"), DatabaseTarget("mysql://u@h/b")],
            access_keys={"k": "s"},
        )
    with pytest.raises(ConfigError, match="scheme"):
        DatabaseTarget("redis://h")
    with pytest.raises(ConfigError, match="unknown data API setting"):
        from_mapping({"upstream": "postgresql://u@h/db", "access_keys": {"k": "s"}, "nope": 1})
    cfg = from_mapping(
        {"data_api": {"upstream": "mysql://u@h/db", "access_keys": ["k:s"], "listen": "0.0.0.0:9"}}
    )
    assert cfg.listen == ("0.0.0.0", 9) and cfg.databases[0].engine == "mysql"
    assert cfg.access_keys == {"k": "s"}


def test_example_config_loads() -> None:
    from pathlib import Path

    import fleetpool.dataapi
    from fleetpool.dataapi.config import load

    cfg = load(Path(fleetpool.dataapi.__file__).parent / "example.toml")
    assert cfg.listen == ("127.0.0.1", 8080)
    assert cfg.databases[0].engine == "postgresql"
    assert cfg.max_response_bytes == 1024 * 1024


def test_command_line_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    pytest.importorskip("typer")
    from fleetpool.dataapi.cli import build_config

    monkeypatch.setenv("FLEETPOOL_DATA_API_ACCESS_KEYS", "envkey:envsecret")
    cfg = build_config(None, ["mysql://u:p@h/db"], ["k:s"], listen="127.0.0.1:9", pool_size=3)
    assert cfg.access_keys == {"envkey": "envsecret", "k": "s"}
    assert (cfg.listen, cfg.pool_size, cfg.databases[0].engine) == (("127.0.0.1", 9), 3, "mysql")
    monkeypatch.delenv("FLEETPOOL_DATA_API_ACCESS_KEYS")
    with pytest.raises(ConfigError, match="access key"):
        build_config(None, ["postgresql://u@h/db"], None)
    with pytest.raises(ConfigError, match="ID:SECRET"):
        build_config(None, ["postgresql://u@h/db"], ["no-colon"])
    path = tmp_path / "d.toml"
    path.write_text('upstream = "postgresql://u@h/db"\naccess_keys = ["a:b"]\npool_size = 4\n')
    cfg = build_config(path, None, ["c:d"], listen="127.0.0.1:7")
    assert cfg.access_keys == {"a": "b", "c": "d"} and cfg.pool_size == 4
    assert cfg.listen == ("127.0.0.1", 7)
