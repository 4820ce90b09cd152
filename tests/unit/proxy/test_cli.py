from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fleetpool.proxy.cli import app, build_config
from fleetpool.tokens import verify_token


def test_build_config_from_options() -> None:
    cfg, _ = build_config(
        listen="127.0.0.1:7001",
        upstream="postgresql://u:p@127.0.0.1:5432/db",
        pool_size=9,
        mode="session",
    )
    assert cfg.listen == ("127.0.0.1", 7001) and cfg.pool_size == 9 and cfg.mode == "session"


def test_every_setting_is_reachable_with_set() -> None:
    from fleetpool.proxy.config import setting_defaults

    cfg, overrides = build_config(
        upstream="postgresql://u:p@127.0.0.1:5432/db",
        settings=[
            "idle_timeout=12.5",
            "max-prepared-statements=7",
            "state_probe=on",
            "admin_users=ops,dba",
            "server_reset_query=DISCARD ALL",
        ],
    )
    assert cfg.idle_timeout == 12.5 and cfg.max_prepared_statements == 7
    assert cfg.state_probe is True and cfg.admin_users == ["ops", "dba"]
    assert overrides["idle_timeout"] == 12.5
    keys = set(setting_defaults())
    for key in keys - {"upstream", "users", "listen"}:
        result = CliRunner().invoke(app, ["--upstream", "postgresql://u@h/db", "--set", f"{key}"])
        assert result.exit_code == 2 and "KEY=VALUE" in result.output, key


def test_bad_set_values_say_what_is_accepted() -> None:
    for item, expect in [
        ("pool_size=many", "expected an integer"),
        ("nope=1", "unknown setting"),
        ("state_probe=maybe", "true or false"),
        ("users=x", "environment variables"),
    ]:
        result = CliRunner().invoke(app, ["--upstream", "postgresql://u@h/db", "--set", item])
        assert result.exit_code == 2 and expect in result.output, (item, result.output)
    listing = CliRunner().invoke(app, ["settings"])
    assert listing.exit_code == 0 and "state_probe = False" in listing.output


def test_bad_upstream_exits_2_with_a_clear_message() -> None:
    result = CliRunner().invoke(app, ["--upstream", "redis://x@y/z"])
    assert result.exit_code == 2
    assert "postgresql://" in result.output and "mysql://" in result.output


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
