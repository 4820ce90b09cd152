from __future__ import annotations

import time
from pathlib import Path

import pytest

from fleetpool.proxy.cli import build_config
from fleetpool.proxy.config import setting_defaults
from fleetpool.tokens import verify_token
from tests.cli_run import fleetpool, one_line_error


def test_build_config_from_options() -> None:
    cfg, _ = build_config(
        listen="127.0.0.1:7001",
        upstream="postgresql://u:p@127.0.0.1:5432/db",
        pool_size=9,
        mode="session",
        environ={},
    )
    assert cfg.listen == ("127.0.0.1", 7001) and cfg.pool_size == 9 and cfg.mode == "session"


def test_every_setting_is_reachable_with_set() -> None:
    cfg, overrides = build_config(
        upstream="postgresql://u:p@127.0.0.1:5432/db",
        settings=[
            "idle_timeout=12.5",
            "max-prepared-statements=7",
            "state_probe=on",
            "admin_users=ops,dba",
            "server_reset_query=DISCARD ALL",
        ],
        environ={},
    )
    assert cfg.idle_timeout == 12.5 and cfg.max_prepared_statements == 7
    assert cfg.state_probe is True and cfg.admin_users == ["ops", "dba"]
    assert overrides["idle_timeout"] == 12.5
    keys = set(setting_defaults())
    for key in keys - {"upstream", "users", "listen"}:
        result = fleetpool("proxy", "--upstream", "postgresql://u@h/db", "--set", f"{key}")
        assert result.code == 2 and "KEY=VALUE" in one_line_error(result), key


def test_bad_set_values_say_what_is_accepted() -> None:
    for item, expect in [
        ("pool_size=many", "expected an integer"),
        ("nope=1", "unknown setting"),
        ("state_probe=maybe", "true or false"),
        ("users=x", "environment variables"),
    ]:
        result = fleetpool("proxy", "--upstream", "postgresql://u@h/db", "--set", item)
        assert result.code == 2 and expect in one_line_error(result), (item, result)
    listing = fleetpool("proxy", "settings")
    assert listing.code == 0 and "state_probe = False" in listing.out


def test_bad_upstream_exits_2_with_a_clear_message() -> None:
    result = fleetpool("proxy", "--upstream", "redis://x@y/z")
    line = one_line_error(result)
    assert result.code == 2
    assert "postgresql://" in line and "mysql://" in line


def test_bad_config_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('upstream = "postgresql://a@h/db"\nworkers = "two"\n')
    result = fleetpool("proxy", "--config", str(path))
    assert result.code == 2
    line = one_line_error(result)
    assert "p.toml:2" in line and "workers" in line


def test_token_command() -> None:
    result = fleetpool("proxy", "token", "--user", "fn", "--secret", "s", "--ttl", "60")
    assert result.code == 0
    assert verify_token("s", result.out.strip(), "fn", time.time())


def test_token_secret_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.delenv("FLEETPOOL_TOKEN_SECRET", raising=False)
    monkeypatch.setenv("FLEETPOOL_TOKEN_SECRET_FILE", str(secret))
    result = fleetpool("token", "--user", "fn")
    assert result.code == 0 and verify_token("from-a-file", result.out.strip(), "fn", time.time())


def test_convert_prints_toml_and_names_what_it_left_out(tmp_path: Path) -> None:
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(
        "[databases]\napp = host=db port=5433 user=app password=pw\n"
        "[pgbouncer]\npool_mode = transaction\nlogfile = /var/log/x.log\n"
    )
    result = fleetpool("proxy", "convert", str(ini))
    assert result.code == 0
    import tomllib

    data = tomllib.loads(result.out)
    assert data["databases"]["app"]["upstream"] == "postgresql://app:pw@db:5433/app"
    assert data["mode"] == "transaction"
    warnings = [line for line in result.err.splitlines() if line.startswith("warning: ")]
    assert any("logfile" in w for w in warnings)
    out = tmp_path / "proxy.toml"
    assert fleetpool("proxy", "convert", str(ini), "--out", str(out)).code == 0
    assert fleetpool("proxy", "--check", str(out)).code == 0


def test_check_validates_without_starting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "proxy.toml"
    good.write_text('upstream = "postgresql://app@db:5432/app"\nauth_file = "users.txt"\n')
    monkeypatch.chdir(tmp_path)
    missing = fleetpool("proxy", "--check", str(good))
    assert missing.code == 2 and "auth_file" in one_line_error(missing)
    (tmp_path / "users.txt").write_text('"app" "pw"\n')
    ok = fleetpool("proxy", "--check", str(good))
    assert ok.code == 0 and f"{good}: OK:" in ok.out and "1 user(s)" in ok.out
    tls = fleetpool("proxy", "--check", str(good), "--set", "tls_cert=/nonexistent.pem")
    assert tls.code == 2 and "tls_cert" in one_line_error(tls)
