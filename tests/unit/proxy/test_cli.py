from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fleetpool.proxy.cli import app, build_config
from fleetpool.tokens import verify_token


def test_build_config_from_options() -> None:
    cfg = build_config(
        listen="127.0.0.1:7001",
        upstream="postgresql://u:p@127.0.0.1:5432/db",
        pool_size=9,
        mode="session",
    )
    assert cfg.listen == ("127.0.0.1", 7001) and cfg.pool_size == 9 and cfg.mode == "session"


def test_bad_upstream_exits_2_with_a_clear_message() -> None:
    result = CliRunner().invoke(app, ["--upstream", "mysql://x@y/z"])
    assert result.exit_code == 2
    assert "postgresql://" in result.output


def test_bad_config_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('upstream = "postgresql://a@h/db"\nworkers = "two"\n')
    result = CliRunner().invoke(app, ["--config", str(path)])
    assert result.exit_code == 2
    assert "p.toml:2" in result.output and "workers" in result.output


def test_token_command() -> None:
    result = CliRunner().invoke(app, ["token", "--user", "fn", "--secret", "s", "--ttl", "60"])
    assert result.exit_code == 0
    import time

    assert verify_token("s", result.output.strip(), "fn", time.time())
